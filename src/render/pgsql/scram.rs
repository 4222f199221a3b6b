//! SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), as PostgreSQL stores them in
//! `pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! The same verifier goes into the role (`ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`)
//! and into pgbouncer's userlist, so pgbouncer authenticates clients without holding
//! the password and logs in to PostgreSQL with the keys the client proved (SCRAM
//! pass-through needs the two verifiers identical). The salt is derived from the role
//! name alone (a public value), so builds stay reproducible and the salt says nothing
//! about the password; see [`salt`] for why not the cluster too.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};

use crate::agent::minio::sigv4::hmac_sha256 as hmac;

/// PostgreSQL's default `scram_iterations`.
pub const ITERATIONS: u32 = 4096;

/// Whether a password is given already hashed (a verifier PostgreSQL stores as is).
pub fn is_hashed(password: &str) -> bool {
    password.starts_with("SCRAM-SHA-256$")
        || (password.len() == 35
            && password.starts_with("md5")
            && password[3..].bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The verifier of `password` for role `user`; a password given already hashed is
/// kept. PostgreSQL prepares a password with SASLprep first, which leaves ASCII as it
/// is; other passwords are refused rather than hashed differently.
pub fn verifier(user: &str, password: &str) -> Result<String, String> {
    if is_hashed(password) {
        return Ok(password.to_string());
    }
    if !password.is_ascii() {
        return Err(format!(
            "the password of {user} is not ASCII: pigsty stores SCRAM verifiers, and does not apply SASLprep; use an ASCII password, or give its SCRAM-SHA-256 verifier"
        ));
    }
    // Every member of every cluster renders the verifiers of its roles (twice: roles
    // and userlist), most of them Pigsty's built-in roles with the fleet's passwords,
    // and PBKDF2's 4096 rounds were most of a fleet's render time: each (role,
    // password) is derived once per process.
    type Memo = std::sync::Mutex<std::collections::HashMap<[u8; 32], String>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let key: [u8; 32] = Sha256::digest(
        [user, password]
            .map(|s| format!("{}:{s}", s.len()))
            .concat()
            .as_bytes(),
    )
    .into();
    let memo = MEMO.get_or_init(Memo::default);
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(v.clone());
    }
    let v = derive(user, password);
    memo.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, v.clone());
    Ok(v)
}

/// The salt of `user`'s verifier: 16 bytes of a hash of the role name, the same in
/// every cluster of every fleet.
///
/// It used to name the cluster too, which made each cluster derive its own verifier of
/// the same built-in role and password: one PBKDF2 (4096 rounds) per role per cluster,
/// most of `plan --all` on a large fleet. Without it, one (role, password) is one
/// derivation however many clusters share it. What that gives away:
/// - The same password of the same role gives the same verifier in every cluster, so
///   verifiers show where a password is reused. The inventory, which every build reads,
///   already holds those passwords in plain text, so it shows that anyway.
/// - The cost of guessing a password from a stolen verifier is unchanged: 4096 rounds
///   of PBKDF2-HMAC-SHA-256 per guess, as PostgreSQL's own default.
/// - Precomputed guesses for one role name work against every fleet. They already did
///   for a cluster name every fleet uses (Pigsty's `pg-meta`), and random salts would
///   make images irreproducible; a strong password is the defence, which
///   `pigsty inventory passwords` writes and build-image insists on.
fn salt(user: &str) -> [u8; 16] {
    let seed = Sha256::digest(format!("pigsty scram salt\0{user}").as_bytes());
    let mut salt = [0; 16];
    salt.copy_from_slice(&seed[..16]);
    salt
}

/// The verifier itself, with the salt of [`salt`].
fn derive(user: &str, password: &str) -> String {
    let salt = salt(user);
    let salted = salted_password(password.as_bytes(), &salt, ITERATIONS);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(&client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${ITERATIONS}:{}${}:{}",
        B64.encode(salt),
        B64.encode(stored_key),
        B64.encode(server_key)
    )
}

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const SHA256_IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// SCRAM's SaltedPassword: PBKDF2-HMAC-SHA-256 (RFC 8018) of one 32-byte block.
///
/// Written out rather than through the `pbkdf2` crate, whose generic HMAC pads and
/// buffers every message: here the HMAC key's inner and outer states are hashed once,
/// and each of the `iterations` rounds is exactly two SHA-256 block compressions (the
/// 32-byte message and its padding fit one block). Same result, a third less time;
/// the tests hold it to the crate and to RFC 7677's vector.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    use sha2::block_api::compress256;
    let mut key = [0u8; 64];
    if password.len() > key.len() {
        key[..32].copy_from_slice(&Sha256::digest(password));
    } else {
        key[..password.len()].copy_from_slice(password);
    }
    let keyed = |pad: u8| {
        let mut state = SHA256_IV;
        compress256(&mut state, &[key.map(|k| k ^ pad)]);
        state
    };
    let (inner, outer) = (keyed(0x36), keyed(0x5c));
    // U1 = HMAC(password, salt || INT(1)): a salt of any length, the general HMAC.
    let mut first = salt.to_vec();
    first.extend_from_slice(&1u32.to_be_bytes());
    let mut u = [0u8; 32];
    u.copy_from_slice(&hmac(password, &first));
    let mut out = u;
    // Ui = HMAC(password, Ui-1): the 32 bytes, 0x80, zeros, and the bit length of
    // key block + message (64 + 32 bytes) in the last 8 bytes.
    let mut block = [0u8; 64];
    block[32] = 0x80;
    block[56..].copy_from_slice(&(((64 + 32) * 8) as u64).to_be_bytes());
    let be_bytes = |state: [u32; 8], into: &mut [u8]| {
        for (chunk, word) in into.chunks_exact_mut(4).zip(state) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
    };
    for _ in 1..iterations {
        block[..32].copy_from_slice(&u);
        let mut state = inner;
        compress256(&mut state, &[block]);
        be_bytes(state, &mut block[..32]);
        let mut state = outer;
        compress256(&mut state, &[block]);
        be_bytes(state, &mut u);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector (user "user", password "pencil"), with its salt and
    /// iteration count: StoredKey and ServerKey follow from the SaltedPassword.
    #[test]
    fn rfc7677_keys() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = salted_password(b"pencil", &salt, 4096);
        let client_key = hmac(&salted, b"Client Key");
        let server_key = hmac(&salted, b"Server Key");
        // ServerSignature = HMAC(ServerKey, AuthMessage), from the RFC's exchange.
        let auth = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
        assert_eq!(
            B64.encode(hmac(&server_key, auth.as_bytes())),
            "6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
        );
        // ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage).
        let stored = Sha256::digest(&client_key);
        let sig = hmac(&stored, auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        assert_eq!(
            B64.encode(proof),
            "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
    }

    /// The written-out PBKDF2 agrees with the `pbkdf2` crate, for passwords shorter
    /// and longer than a SHA-256 block (which HMAC hashes first), salts of any length
    /// and round counts from 1.
    #[test]
    fn salted_password_is_pbkdf2() {
        let long = "x".repeat(65);
        let block = "y".repeat(64);
        for password in ["", "pencil", "DBUser.DBA", block.as_str(), long.as_str()] {
            for salt in [&b""[..], b"salt", &[7u8; 16], &[9u8; 70]] {
                for rounds in [1, 2, 3, 4096] {
                    assert_eq!(
                        salted_password(password.as_bytes(), salt, rounds),
                        pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, rounds),
                        "{password:?} {salt:?} {rounds}"
                    );
                }
            }
        }
    }

    #[test]
    fn verifiers_are_stable_per_role_and_keep_hashed_passwords() {
        let a = verifier("dbuser_meta", "DBUser.Meta").unwrap();
        assert_eq!(a, verifier("dbuser_meta", "DBUser.Meta").unwrap());
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{a}");
        // Another role with the same password: another salt, another verifier.
        assert_ne!(a, verifier("dbuser_view", "DBUser.Meta").unwrap());
        assert!(!a.contains("DBUser.Meta"));
        assert_eq!(verifier("u", &a).unwrap(), a);
        let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(verifier("u", md5).unwrap(), md5);
        assert!(verifier("u", "pässword").unwrap_err().contains("not ASCII"));
    }
}
