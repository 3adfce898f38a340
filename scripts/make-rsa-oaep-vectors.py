#!/usr/bin/env python3
"""Makes tests/vectors/rsa_oaep.json: a 3072-bit test-only key pair and applicationSync-style
clientSecret ciphertexts under each OAEP reading, made with Python `cryptography` (an
implementation independent of csm's). Run from the repository root; the output is committed."""

import base64
import json
import secrets

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

READINGS = {
    "sha256-mgf1sha1": (hashes.SHA256(), hashes.SHA1()),
    "sha256": (hashes.SHA256(), hashes.SHA256()),
    "sha1": (hashes.SHA1(), hashes.SHA1()),
}

key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
pub = key.public_key()
cases = []
for name, (digest, mgf) in READINGS.items():
    for plaintext in ("cs-" + secrets.token_hex(16), "客户端密钥-" + secrets.token_urlsafe(12)):
        ct = pub.encrypt(
            plaintext.encode("utf-8"),
            padding.OAEP(mgf=padding.MGF1(algorithm=mgf), algorithm=digest, label=None),
        )
        cases.append({"reading": name, "plaintext": plaintext,
                      "ciphertext_b64": base64.b64encode(ct).decode("ascii")})

doc = {
    "about": "RSA-OAEP clientSecret ciphertexts (applicationSync) under three OAEP readings; "
             "made by scripts/make-rsa-oaep-vectors.py with Python cryptography. TEST-ONLY key.",
    "private_key_pkcs8_pem": key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode("ascii"),
    "public_key_spki_pem": pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
    "public_key_pkcs1_pem": pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode("ascii"),
    "small_public_key_spki_pem": rsa.generate_private_key(public_exponent=65537, key_size=2048)
        .public_key().public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii"),
    "cases": cases,
}
with open("tests/vectors/rsa_oaep.json", "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False, indent=1)
    f.write("\n")
