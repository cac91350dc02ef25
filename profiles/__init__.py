"""Package data of mediasec (installed as ``mediasec.profiles``); read via ``mediasec._data``."""
