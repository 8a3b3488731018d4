//! Rich notifications: Graph's encryption recipe (fact sheet §4.4).
//!
//! For each notification: a fresh random 32-byte key; `data` is the
//! resource's JSON encrypted with AES-256-CBC (PKCS#7 padding, IV = the
//! first 16 bytes of the key); `dataSignature` is HMAC-SHA256 of the
//! encrypted bytes under the same key; `dataKey` is the key encrypted with
//! RSA-OAEP (SHA-1, MGF1-SHA-1) under the subscription certificate's public
//! key; `encryptionCertificateThumbprint` is the certificate's SHA-1
//! thumbprint in upper-case hex. Everything is base64 (standard alphabet).

use aes::Aes256;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeEncrypt, KeyIvInit};
use hmac::{Hmac, KeyInit, Mac};
use rsa::pkcs8::DecodePublicKey;
use sha1::{Digest, Sha1};
use sha2::Sha256;
use x509_cert::Certificate;
use x509_cert::der::{Decode, Encode};

/// Why a certificate cannot be used, or content not encrypted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    #[error("the certificate is not base64")]
    NotBase64,
    #[error("the certificate is not a DER X.509 certificate: {0}")]
    NotX509(String),
    #[error("the certificate's key is not an RSA key of 2048 to 4096 bits")]
    NotRsa,
    #[error("encryption failed: {0}")]
    Encryption(String),
}

/// The encrypted parts of a rich notification, each base64.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncryptedContent {
    /// The resource, AES-256-CBC encrypted.
    pub data: String,
    /// HMAC-SHA256 of the encrypted bytes under the AES key.
    pub data_signature: String,
    /// The AES key, RSA-OAEP-SHA1 encrypted for the certificate.
    pub data_key: String,
}

/// A subscriber's certificate: its public key and thumbprint.
pub struct EncryptionCertificate {
    key: rsa::PublicKey,
    thumbprint: String,
}

impl EncryptionCertificate {
    /// Reads a base64 DER certificate (PEM armour tolerated).
    pub fn parse(text: &str) -> Result<EncryptionCertificate, CryptoError> {
        let body: String = text
            .lines()
            .filter(|line| !line.starts_with("-----"))
            .collect::<String>()
            .split_whitespace()
            .collect();
        let der = STANDARD.decode(body).map_err(|_| CryptoError::NotBase64)?;
        let certificate =
            Certificate::from_der(&der).map_err(|e| CryptoError::NotX509(e.to_string()))?;
        let spki = certificate
            .tbs_certificate()
            .subject_public_key_info()
            .to_der()
            .map_err(|e| CryptoError::NotX509(e.to_string()))?;
        let key = rsa::PublicKey::from_public_key_der(&spki).map_err(|_| CryptoError::NotRsa)?;
        let bits = rsa::traits::PublicKeyParts::size(&key) * 8;
        if !(2048..=4096).contains(&bits) {
            return Err(CryptoError::NotRsa);
        }
        let thumbprint = Sha1::digest(&der)
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect();
        Ok(EncryptionCertificate { key, thumbprint })
    }

    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Encrypts `plaintext` under a fresh key.
    pub fn encrypt(&self, plaintext: &[u8]) -> Result<EncryptedContent, CryptoError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| CryptoError::Encryption(e.to_string()))?;
        let encryptor = cbc::Encryptor::<Aes256>::new_from_slices(&key, &key[..16])
            .map_err(|e| CryptoError::Encryption(e.to_string()))?;
        let data = encryptor.encrypt_padded_vec::<Pkcs7>(plaintext);
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key)
            .map_err(|e| CryptoError::Encryption(e.to_string()))?;
        mac.update(&data);
        let signature = mac.finalize().into_bytes();
        let wrapped = self
            .key
            .encrypt(&mut getrandom::SysRng, rsa::Oaep::<Sha1>::new(), &key)
            .map_err(|e| CryptoError::Encryption(e.to_string()))?;
        Ok(EncryptedContent {
            data: STANDARD.encode(data),
            data_signature: STANDARD.encode(signature),
            data_key: STANDARD.encode(wrapped),
        })
    }
}
