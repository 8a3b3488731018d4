"""Decrypts a rich change notification the way Microsoft Graph documents it.

Reads a changeNotificationCollection (JSON) on stdin and the path of the
subscriber's private key (PEM) as the only argument. For each notification
with encryptedContent it follows Graph's documented steps, independently of
the server:

1. dataKey: base64-decode, then RSA-OAEP (SHA-1, MGF1-SHA-1) decrypt with
   the private key: the symmetric key.
2. dataSignature: HMAC-SHA256 of the base64-decoded data under that key
   must equal it (compared in constant time); otherwise stop.
3. data: base64-decode, AES-CBC decrypt with the key and IV = the key's
   first 16 bytes, remove PKCS7 padding.

Prints one JSON array: per notification, the decrypted resource and
"signatureValid": true. Exits non-zero if a signature does not verify.
"""

import base64
import hmac
import json
import sys

from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import padding as asymmetric
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes


def decrypt(content, private_key):
    key = private_key.decrypt(
        base64.b64decode(content["dataKey"]),
        asymmetric.OAEP(
            mgf=asymmetric.MGF1(algorithm=hashes.SHA1()),
            algorithm=hashes.SHA1(),
            label=None,
        ),
    )
    data = base64.b64decode(content["data"])
    expected = hmac.new(key, data, "sha256").digest()
    if not hmac.compare_digest(expected, base64.b64decode(content["dataSignature"])):
        raise SystemExit("dataSignature does not match the data")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(data) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    plain = unpadder.update(padded) + unpadder.finalize()
    return json.loads(plain)


def main():
    with open(sys.argv[1], "rb") as file:
        private_key = serialization.load_pem_private_key(file.read(), password=None)
    collection = json.load(sys.stdin)
    out = []
    for item in collection["value"]:
        content = item.get("encryptedContent")
        if content is None:
            continue
        resource = decrypt(content, private_key)
        out.append({"resource": resource, "signatureValid": True,
                    "encryptionCertificateId": content["encryptionCertificateId"],
                    "encryptionCertificateThumbprint": content["encryptionCertificateThumbprint"]})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
