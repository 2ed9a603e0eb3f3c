//! hearth-hsm against the real SoftHSM2 module.

use std::process::Command;

use hearth_hsm::testing::{TestToken, TEST_PIN};
use hearth_hsm::{pin, AuthPin, Curve, HsmError, Token, ValueAccess};

fn verify(curve: Curve, point: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let alg = match curve {
        Curve::P256 => &ring::signature::ECDSA_P256_SHA256_ASN1,
        Curve::P384 => &ring::signature::ECDSA_P384_SHA384_ASN1,
    };
    ring::signature::UnparsedPublicKey::new(alg, point)
        .verify(msg, sig)
        .is_ok()
}

#[test]
fn p256_and_p384_keys_sign_in_the_token_and_verify_on_the_host() -> anyhow::Result<()> {
    let t = TestToken::new("hsm-sign")?;
    let token = t.open()?;
    for (label, curve) in [("k256", Curve::P256), ("k384", Curve::P384)] {
        let key = token.generate_ec_key(label, curve)?;
        assert_eq!(key.public_point.len(), curve.point_len());
        let msg = b"tbsCertificate bytes";
        let sig = token.sign(&key, msg)?;
        assert!(
            verify(curve, &key.public_point, msg, &sig),
            "{label} signature verifies"
        );
        assert!(!verify(curve, &key.public_point, b"other", &sig));
    }
    Ok(())
}

#[test]
fn private_keys_are_sensitive_and_cannot_be_read_out() -> anyhow::Result<()> {
    let t = TestToken::new("hsm-extract")?;
    let token = t.open()?;
    let key = token.generate_ec_key("ca-key", Curve::P256)?;
    assert_eq!(token.private_value_access(&key)?, ValueAccess::Sensitive);
    let (sensitive, extractable, private, on_token) = token.private_key_flags(&key)?;
    assert!(
        sensitive && private && on_token,
        "sensitive, private, token object"
    );
    assert!(!extractable, "not extractable");

    // An outside tool, logged in with the right PIN, sees the same flags...
    let pkcs11_tool = |args: &[&str]| -> anyhow::Result<String> {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", t.conf())
            .args(["--module", hearth_hsm::testing::SOFTHSM_MODULE])
            .args(["--token-label", &t.label, "--login", "--pin", TEST_PIN])
            .args(args)
            .output()?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    };
    let listing = pkcs11_tool(&["--list-objects", "--type", "privkey"])?;
    let access = listing
        .lines()
        .find(|l| l.trim_start().starts_with("Access:"))
        .unwrap_or_else(|| panic!("no Access line in {listing}"));
    assert!(access.contains("never extractable"), "{access}");
    assert!(access.contains("always sensitive"), "{access}");
    let flags: Vec<&str> = access
        .split(':')
        .nth(1)
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .collect();
    assert!(!flags.contains(&"extractable"), "{access}");
    // ...and cannot read the private key out.
    let out_file = t.conf().with_file_name(format!("{}-read.der", t.label));
    let text = pkcs11_tool(&[
        "--read-object",
        "--type",
        "privkey",
        "--label",
        "ca-key",
        "-o",
        out_file.to_str().expect("utf-8 path"),
    ])?;
    let read = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    assert!(
        read.is_empty(),
        "pkcs11-tool wrote {} bytes of private key: {text}",
        read.len()
    );
    // The public half is readable, so the lookup by label itself works.
    let text = pkcs11_tool(&[
        "--read-object",
        "--type",
        "pubkey",
        "--label",
        "ca-key",
        "-o",
        out_file.to_str().expect("utf-8 path"),
    ])?;
    let public = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    assert!(!public.is_empty(), "{text}");
    Ok(())
}

#[test]
fn keys_are_found_by_label_and_id_and_never_replaced() -> anyhow::Result<()> {
    let t = TestToken::new("hsm-find")?;
    let (id, point) = {
        let token = t.open()?;
        let key = token.generate_ec_key("root", Curve::P384)?;
        let err = token.generate_ec_key("root", Curve::P256).unwrap_err();
        assert!(matches!(err, HsmError::KeyExists { .. }), "{err}");
        assert!(token.find_key("absent")?.is_none());
        (key.id, key.public_point)
    };
    // A new session (as after a restart) finds the same key.
    let token = t.open()?;
    let by_label = token.find_key("root")?.expect("key by label");
    assert_eq!(
        (by_label.curve, &by_label.id, &by_label.public_point),
        (Curve::P384, &id, &point)
    );
    let by_id = token.find_key_by_id(&id)?.expect("key by id");
    assert_eq!(by_id.label, "root");
    let sig = token.sign(&by_id, b"m")?;
    assert!(verify(Curve::P384, &point, b"m", &sig));
    Ok(())
}

#[test]
fn wrong_pin_missing_token_and_missing_module_are_clear_errors() -> anyhow::Result<()> {
    let t = TestToken::new("hsm-errors")?;
    let wrong = pin::read_file(&t.wrong_pin_file)?;
    let err = Token::open(&t.module, &t.label, &wrong).unwrap_err();
    assert!(matches!(err, HsmError::WrongPin { .. }), "{err}");
    assert!(err.to_string().contains(&t.label));
    assert!(
        !err.to_string().contains("999999"),
        "the PIN is not in the message"
    );

    let err = Token::open(&t.module, "no-such-token", &t.pin()).unwrap_err();
    assert!(matches!(err, HsmError::TokenNotFound { .. }), "{err}");
    assert!(err.to_string().contains("no-such-token"));

    let err = Token::open("/nonexistent/libpkcs11.so".as_ref(), &t.label, &t.pin()).unwrap_err();
    assert!(matches!(err, HsmError::Module { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/libpkcs11.so"));
    Ok(())
}

#[test]
fn a_token_is_never_initialized_again_over_an_existing_one() -> anyhow::Result<()> {
    let t = TestToken::new("hsm-reinit")?;
    let key = t.open()?.generate_ec_key("kept", Curve::P256)?;
    let err = hearth_hsm::init_token(
        std::path::Path::new(hearth_hsm::testing::SOFTHSM_MODULE),
        &t.label,
        &AuthPin::from("other-so-pin"),
        &AuthPin::from("other-pin"),
    )
    .expect_err("initializing a token over an existing label must fail");
    assert!(matches!(err, HsmError::TokenExists { .. }), "{err}");
    // Nothing changed: the old PIN still opens it and the key is still there.
    let found = t.open()?.find_key("kept")?.expect("the key survives");
    assert_eq!(found.public_point, key.public_point);
    Ok(())
}
