"""Object identifiers (RFC 5652, 3370, 3565, 3211, 4055, 8018), by RFC name."""

DATA = "1.2.840.113549.1.7.1"
SIGNED_DATA = "1.2.840.113549.1.7.2"
ENVELOPED_DATA = "1.2.840.113549.1.7.3"
DIGESTED_DATA = "1.2.840.113549.1.7.5"
CONTENT_TYPE_NAMES = {DATA: "data", SIGNED_DATA: "signedData", ENVELOPED_DATA: "envelopedData",
                      DIGESTED_DATA: "digestedData"}

RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
RSAES_OAEP = "1.2.840.113549.1.1.7"
RSASSA_PSS = "1.2.840.113549.1.1.10"
MGF1 = "1.2.840.113549.1.1.8"
SHA_WITH_RSA = {"sha1": "1.2.840.113549.1.1.5", "sha256": "1.2.840.113549.1.1.11",
                "sha384": "1.2.840.113549.1.1.12", "sha512": "1.2.840.113549.1.1.13"}

DIGEST = {"sha1": "1.3.14.3.2.26", "sha256": "2.16.840.1.101.3.4.2.1",
          "sha384": "2.16.840.1.101.3.4.2.2", "sha512": "2.16.840.1.101.3.4.2.3"}
DIGEST_NAME = {v: k for k, v in DIGEST.items()}

CIPHER = {"aes-128": "2.16.840.1.101.3.4.1.2", "aes-192": "2.16.840.1.101.3.4.1.22",
          "aes-256": "2.16.840.1.101.3.4.1.42", "3des": "1.2.840.113549.3.7"}
CIPHER_NAME = {v: k for k, v in CIPHER.items()}

PBKDF2 = "1.2.840.113549.1.5.12"
HMAC = {"sha1": "1.2.840.113549.2.7", "sha256": "1.2.840.113549.2.9",
        "sha384": "1.2.840.113549.2.10", "sha512": "1.2.840.113549.2.11"}
HMAC_NAME = {v: k for k, v in HMAC.items()}
PWRI_KEK = "1.2.840.113549.1.9.16.3.9"

ATTR_CONTENT_TYPE = "1.2.840.113549.1.9.3"
ATTR_MESSAGE_DIGEST = "1.2.840.113549.1.9.4"
ATTR_SIGNING_TIME = "1.2.840.113549.1.9.5"
