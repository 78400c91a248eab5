//! Holdout: a deterministic bucket per customer; low buckets are the control group.

use sha2::{Digest, Sha256};

use crate::action::Group;

/// The customer's bucket in `0..10_000`: the first 8 bytes of SHA-256 of the customer key
/// (UTF-8), big-endian, modulo 10 000. Any system can compute the same bucket.
pub fn holdout_bucket(customer_key: &str) -> u16 {
    let digest = Sha256::digest(customer_key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) % 10_000) as u16
}

/// Assigns treatment or control by bucket.
#[derive(Clone, Copy, Debug)]
pub struct Holdout {
    /// Buckets below this (in basis points of customers) are control.
    pub holdout_bp: u16,
}

impl Holdout {
    /// The customer's group.
    pub fn group(&self, customer_key: &str) -> Group {
        if holdout_bucket(customer_key) < self.holdout_bp {
            Group::Control
        } else {
            Group::Treatment
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_matches_the_spec_formula_and_splits_about_right() {
        let d = Sha256::digest(b"m-1001");
        let expect = (u64::from_be_bytes(d[..8].try_into().unwrap()) % 10_000) as u16;
        assert_eq!(holdout_bucket("m-1001"), expect);
        let h = Holdout { holdout_bp: 500 };
        let control = (0..20_000)
            .filter(|i| h.group(&format!("m-{i}")) == Group::Control)
            .count();
        assert!(
            (800..1200).contains(&control),
            "{control} of 20000 in control"
        );
        assert_eq!(Holdout { holdout_bp: 0 }.group("m-1"), Group::Treatment);
        assert_eq!(Holdout { holdout_bp: 10_000 }.group("m-1"), Group::Control);
    }
}
