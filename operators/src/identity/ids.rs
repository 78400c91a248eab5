//! Typed identifiers and the placeholder values that must never link anything.

/// The type of an identifier in the identity graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IdType {
    /// The member / account id: hard, one per customer.
    UserId,
    /// SHA-256 of the e-mail address: hard, one per customer.
    EmailSha256,
    /// SHA-256 of the phone number: hard, one per customer.
    PhoneSha256,
    /// A device or cookie id: soft, up to [`MAX_ANONYMOUS_IDS`] per customer.
    AnonymousId,
}

/// Anonymous ids kept per customer; linking one more drops the oldest link.
pub const MAX_ANONYMOUS_IDS: usize = 20;

impl IdType {
    /// Every type.
    pub const ALL: [IdType; 4] = [
        IdType::UserId,
        IdType::EmailSha256,
        IdType::PhoneSha256,
        IdType::AnonymousId,
    ];

    /// The field name, used in metrics and checkpoints.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdType::UserId => "user_id",
            IdType::EmailSha256 => "email_sha256",
            IdType::PhoneSha256 => "phone_sha256",
            IdType::AnonymousId => "anonymous_id",
        }
    }

    /// The type named `s`.
    pub fn parse(s: &str) -> Option<IdType> {
        IdType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

/// SHA-256 of the empty string: what a producer hashing a missing e-mail sends.
const SHA256_OF_EMPTY: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Whether `value` is a placeholder rather than an identifier: empty, `0`, `-1`,
/// `null`, `undefined`, `anonymous` (any case, surrounding spaces ignored), all zeros
/// (`0000`, `00000000-0000-0000-0000-000000000000`), or the SHA-256 of nothing.
pub fn is_junk(value: &str) -> bool {
    // Nearly every id is a real one: longer than the words below (other than the SHA-256
    // of nothing), not padded, and holding a byte other than `0` and `-` near its start.
    let b = value.as_bytes();
    if let (Some(first), Some(last)) = (b.first(), b.last())
        && first.is_ascii_alphanumeric()
        && last.is_ascii_alphanumeric()
        && !matches!(b.len(), 3 | 4 | 9 | 64)
        && b.len() > 2
        && b[..3].iter().any(|&c| c != b'0' && c != b'-')
    {
        return false;
    }
    let v = value.trim();
    if v.is_empty() || v == "-1" {
        return true;
    }
    if v.bytes().all(|b| b == b'0' || b == b'-') {
        return true;
    }
    ["null", "undefined", "anonymous", "none", "nil"]
        .iter()
        .any(|j| v.eq_ignore_ascii_case(j))
        || v.eq_ignore_ascii_case(SHA256_OF_EMPTY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_junk_and_real_ids_are_not() {
        for j in [
            "",
            " ",
            "0",
            "-1",
            "null",
            "NULL",
            "undefined",
            "Anonymous",
            "00000000-0000-0000-0000-000000000000",
            "0000000000000000000000000000000000000000000000000000000000000000",
            SHA256_OF_EMPTY,
            " null ",
            "NIL",
            "00000",
            "0-0-0-0-0",
        ] {
            assert!(is_junk(j), "{j:?}");
        }
        for id in [
            "m-1001",
            "dev-7f3a",
            "10",
            "a0",
            "0x0",
            "00a1",
            "0-00-1",
            " m-1001 ",
            "Nils",
            SHA256_OF_EMPTY.replace('e', "f").as_str(),
        ] {
            assert!(!is_junk(id), "{id:?}");
        }
        assert_eq!(IdType::parse("email_sha256"), Some(IdType::EmailSha256));
    }
}
