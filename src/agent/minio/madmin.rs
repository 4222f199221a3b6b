//! madmin's `EncryptData` (madmin-go `encrypt.go`), which MinIO's admin handlers undo
//! with `DecryptData` keyed by the root secret:
//! `salt (32) || AEAD id (1) || nonce (8) || sio-go stream of the data`, the key being
//! Argon2id(password, salt, t=1, m=64 MiB, p=4, 32 bytes). Id 0x00 is AES-256-GCM with
//! that key (0x01 ChaCha20-Poly1305, 0x02 AES-256-GCM under PBKDF2 for FIPS builds):
//! MinIO accepts all three, and the agent always sends 0x00.

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use anyhow::Context;

pub const SALT_LEN: usize = 32;
pub const NONCE_LEN: usize = 8;
pub const ARGON2ID_AES_GCM: u8 = 0x00;
/// sio-go's `BufSize`: the plaintext size of every fragment but the last.
pub const FRAGMENT: usize = 1 << 14;
pub const TAG_LEN: usize = 16;

/// Argon2id as madmin calls it: `argon2.IDKey(password, salt, 1, 64*1024, 4, 32)`.
pub fn derive_key(password: &str, salt: &[u8]) -> anyhow::Result<[u8; 32]> {
    let params = argon2::Params::new(64 * 1024, 1, 4, Some(32))
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut key = [0u8; 32];
    argon
        .hash_password_into(password.as_bytes(), salt, &mut key)
        .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(key)
}

/// The AEAD nonce of fragment `seq`: the stream nonce, then `seq` little-endian.
pub fn fragment_nonce(nonce: &[u8; NONCE_LEN], seq: u32) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..NONCE_LEN].copy_from_slice(nonce);
    n[NONCE_LEN..].copy_from_slice(&seq.to_le_bytes());
    n
}

/// `EncryptData(password, data)` with fresh random salt and nonce.
pub fn encrypt_data(password: &str, data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut salt = [0u8; SALT_LEN];
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::getrandom(&mut salt).map_err(|e| anyhow::anyhow!("random salt: {e}"))?;
    getrandom::getrandom(&mut nonce).map_err(|e| anyhow::anyhow!("random nonce: {e}"))?;
    let key = derive_key(password, &salt)?;
    let mut out = Vec::with_capacity(SALT_LEN + 1 + NONCE_LEN + data.len() + TAG_LEN);
    out.extend_from_slice(&salt);
    out.push(ARGON2ID_AES_GCM);
    out.extend_from_slice(&nonce);
    out.extend(seal_stream(&key, &nonce, data)?);
    Ok(out)
}

/// sio-go's `EncWriter` given all the data at once (`Write` then `Close`). The
/// associated data of every fragment is a flag byte (0x00, 0x80 on the last) and
/// the tag of an empty message sealed under sequence number 0; data fragments
/// count from 1, and the last holds 0..=FRAGMENT bytes (exactly FRAGMENT when the
/// data fills whole fragments, none when the data is empty).
pub fn seal_stream(
    key: &[u8; 32],
    nonce: &[u8; NONCE_LEN],
    data: &[u8],
) -> anyhow::Result<Vec<u8>> {
    let aead = Aes256Gcm::new_from_slice(key).map_err(|e| anyhow::anyhow!("AES key: {e}"))?;
    let seal = |seq: u32, msg: &[u8], aad: &[u8]| {
        aead.encrypt(
            Nonce::from_slice(&fragment_nonce(nonce, seq)),
            Payload { msg, aad },
        )
        .map_err(|e| anyhow::anyhow!("AES-GCM: {e}"))
    };
    let mut aad = vec![0x00];
    aad.extend(seal(0, b"", b"")?);
    let mut out = Vec::with_capacity(data.len() + TAG_LEN * (data.len() / FRAGMENT + 1));
    let (mut rest, mut seq) = (data, 1u32);
    while rest.len() > FRAGMENT {
        out.extend(seal(seq, &rest[..FRAGMENT], &aad)?);
        rest = &rest[FRAGMENT..];
        seq = seq.checked_add(1).context("sio: data limit exceeded")?;
    }
    aad[0] = 0x80;
    out.extend(seal(seq, rest, &aad)?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sio-go layout: every fragment but the last is 16 KiB + a 16-byte tag; the
    /// last holds the rest (all of a 16 KiB remainder; only a tag for no data).
    #[test]
    fn sio_fragments() {
        let (key, nonce) = ([7u8; 32], [9u8; NONCE_LEN]);
        for (len, sealed) in [
            (0, 16),
            (1, 17),
            (16384, 16400),
            (16385, 16400 + 17),
            (3 * 16384, 3 * 16400),
        ] {
            let out = seal_stream(&key, &nonce, &vec![0u8; len]).unwrap();
            assert_eq!(out.len(), sealed, "{len} bytes");
        }
        // A different nonce gives a different stream.
        let a = seal_stream(&key, &nonce, b"x").unwrap();
        let b = seal_stream(&key, &[8u8; 8], b"x").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn encrypted_header() {
        let out = encrypt_data("root.secret", br#"{"status":"enabled"}"#).unwrap();
        assert_eq!(out.len(), 32 + 1 + 8 + 20 + 16);
        assert_eq!(out[32], ARGON2ID_AES_GCM);
        let again = encrypt_data("root.secret", br#"{"status":"enabled"}"#).unwrap();
        assert_ne!(out[..32], again[..32], "a fresh salt each time");
    }
}
