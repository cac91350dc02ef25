"""Domain: the File-set model (``fileset``), the medium plan (``plan``) and the build
driver (``build``). No file system access: sources come in through callables."""
