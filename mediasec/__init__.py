"""mediasec: DICOM secure media (PS3.10 §7.4, PS3.11, PS3.12, PS3.15 Annex D).

The recipes below are the library's front door with safe defaults; the layers are
described in the README's design section.
"""

__version__ = "0.1.0"
