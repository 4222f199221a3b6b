//! SCRAM-SHA-256 verifiers (RFC 5802, RFC 7677), as PostgreSQL stores them in
//! `pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! The same verifier goes into the role (`ALTER ROLE ... PASSWORD 'SCRAM-SHA-256$...'`)
//! and into pgbouncer's userlist, so pgbouncer authenticates clients without holding
//! the password and logs in to PostgreSQL with the keys the client proved (SCRAM
//! pass-through needs the two verifiers identical). The salt is derived from the fleet
//! (its CA certificate) and the role name, public values, so builds stay reproducible
//! and the salt says nothing about the password; see [`salt`].

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

/// The SCRAM salt scope of a node's fleet: the sha256 of its fleet CA certificate, or
/// empty when the fleet has no CA (a plan or render before any build made one).
pub fn scope(tls: Option<&crate::model::NodeTls>) -> String {
    tls.map(|t| hex::encode(Sha256::digest(t.ca.as_bytes())))
        .unwrap_or_default()
}

/// The verifier of `password` for role `user` in the fleet of salt scope `scope`
/// ([`scope`]); a password given already hashed is kept. PostgreSQL prepares a
/// password with SASLprep first, which leaves ASCII as it is; other passwords are
/// refused rather than hashed differently.
pub fn verifier(scope: &str, user: &str, password: &str) -> Result<String, String> {
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
    // and PBKDF2's 4096 rounds were most of a fleet's render time: each (scope, role,
    // password) is derived once per process.
    // Bounded far above a fleet's distinct (role, password) pairs.
    static MEMO: crate::memo::Memo = crate::memo::Memo::new(1 << 16);
    let key: [u8; 32] = Sha256::digest(
        [scope, user, password]
            .map(|s| format!("{}:{s}", s.len()))
            .concat()
            .as_bytes(),
    )
    .into();
    MEMO.get_or_make::<String>(key, || Ok(derive(scope, user, password)))
}

/// The salt of `user`'s verifier: 16 bytes of a hash of the fleet's scope (its CA
/// certificate's digest) and the role name; the same in every cluster of a fleet.
///
/// It used to name the cluster instead of the fleet, which made each cluster derive
/// its own verifier of the same built-in role and password: one PBKDF2 (4096 rounds)
/// per role per cluster, most of `plan --all` on a large fleet. Now one (role,
/// password) is one derivation however many clusters of the fleet share it. What that
/// gives away, and what it does not:
/// - The same password of the same role gives the same verifier in every cluster of a
///   fleet, so verifiers show where a password is reused. The inventory, which every
///   build reads, holds those passwords in plain text, so it shows that anyway.
/// - The cost of guessing a password from a stolen verifier is unchanged: 4096 rounds
///   of PBKDF2-HMAC-SHA-256 per guess, PostgreSQL's own default.
/// - Guesses precomputed for one role name do not carry from one fleet to another:
///   each fleet's CA (a key pair made at its first build) gives it its own salts.
///   Random salts would make images irreproducible.
fn salt(scope: &str, user: &str) -> [u8; 16] {
    let seed = Sha256::digest(format!("pigsty scram salt\0{scope}\0{user}").as_bytes());
    let mut salt = [0; 16];
    salt.copy_from_slice(&seed[..16]);
    salt
}

/// The verifier itself, with the salt of [`salt`].
fn derive(scope: &str, user: &str, password: &str) -> String {
    let salt = salt(scope, user);
    let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password.as_bytes(), &salt, ITERATIONS);
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
    fn verifiers_are_stable_per_fleet_and_role_and_keep_hashed_passwords() {
        let a = verifier("fleet-a", "dbuser_meta", "DBUser.Meta").unwrap();
        assert_eq!(
            a,
            verifier("fleet-a", "dbuser_meta", "DBUser.Meta").unwrap()
        );
        assert!(a.starts_with("SCRAM-SHA-256$4096:"), "{a}");
        // Another role with the same password: another salt, another verifier.
        assert_ne!(
            a,
            verifier("fleet-a", "dbuser_view", "DBUser.Meta").unwrap()
        );
        // The same role and password in another fleet: another salt too.
        assert_ne!(
            a,
            verifier("fleet-b", "dbuser_meta", "DBUser.Meta").unwrap()
        );
        assert!(!a.contains("DBUser.Meta"));
        assert_eq!(verifier("fleet-a", "u", &a).unwrap(), a);
        let md5 = "md5a3556571e93b0d20722ba62be61e8c2d";
        assert_eq!(verifier("", "u", md5).unwrap(), md5);
        assert!(
            verifier("", "u", "pässword")
                .unwrap_err()
                .contains("not ASCII")
        );
    }
}
