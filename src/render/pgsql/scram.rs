//! SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), as PostgreSQL stores them in
//! `pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! The same verifier goes into the role (`ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`)
//! and into pgbouncer's userlist, so pgbouncer authenticates clients without holding
//! the password and logs in to PostgreSQL with the keys the client proved (SCRAM
//! pass-through needs the two verifiers identical). The salt is derived from the
//! cluster and the role name (public values), so builds stay reproducible and the salt
//! says nothing about the password.

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

/// The verifier of `password` for role `user` of `cluster`; a password given already
/// hashed is kept. PostgreSQL prepares a password with SASLprep first, which leaves
/// ASCII as it is; other passwords are refused rather than hashed differently.
pub fn verifier(cluster: &str, user: &str, password: &str) -> Result<String, String> {
    if is_hashed(password) {
        return Ok(password.to_string());
    }
    if !password.is_ascii() {
        return Err(format!(
            "the password of {user} is not ASCII: pigsty stores SCRAM verifiers, and does not apply SASLprep; use an ASCII password, or give its SCRAM-SHA-256 verifier"
        ));
    }
    // Every member of a cluster renders the same verifiers (twice: roles and
    // userlist), and PBKDF2's 4096 rounds are most of a fleet's render time: each
    // (cluster, role, password) is derived once per process.
    type Memo = std::sync::Mutex<std::collections::HashMap<[u8; 32], String>>;
    static MEMO: std::sync::OnceLock<Memo> = std::sync::OnceLock::new();
    let key: [u8; 32] = Sha256::digest(
        [cluster, user, password]
            .map(|s| format!("{}:{s}", s.len()))
            .concat()
            .as_bytes(),
    )
    .into();
    let memo = MEMO.get_or_init(Memo::default);
    if let Some(v) = memo.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(v.clone());
    }
    let v = derive(cluster, user, password);
    memo.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, v.clone());
    Ok(v)
}

/// The verifier itself, with a salt derived from the cluster and role names.
fn derive(cluster: &str, user: &str, password: &str) -> String {
    let seed = Sha256::digest(format!("pigsty scram salt\0{cluster}\0{user}").as_bytes());
    let salt = &seed[..16];
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), salt, ITERATIONS);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's test vector (user "user", password "pencil"), with its salt and
    /// iteration count: StoredKey and ServerKey follow from the SaltedPassword.
    #[test]
    fn rfc7677_keys() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(b"pencil", &salt, 4096);
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

    #[test]
    fn verifiers_are_stable_per_role_and_keep_hashed_passwords() {
        let a = verifier("pg-test", "dbuser_meta", "DBUser.Meta").unwrap();
        assert_eq!(
            a,
            verifier("pg-test", "dbuser_meta", "DBUser.Meta").unwrap()
        );
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{a}");
        assert_ne!(
            a,
            verifier("pg-other", "dbuser_meta", "DBUser.Meta").unwrap()
        );
        assert!(!a.contains("DBUser.Meta"));
        assert_eq!(verifier("c", "u", &a).unwrap(), a);
        let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(verifier("c", "u", md5).unwrap(), md5);
        assert!(
            verifier("c", "u", "pässword")
                .unwrap_err()
                .contains("not ASCII")
        );
    }
}
