"""Certificates, keys and trust (chain and key-usage checks against a TrustContext)."""
