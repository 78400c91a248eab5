//! Step 2, consent: an action on a channel whose consent is not `true` is suppressed
//! (`no_consent`). Checked when the action arrives and again when an action held for
//! quiet hours is released.

/// A customer's consent per channel, as their latest profile fields left it.
pub type Consent = Vec<(String, bool)>;

/// Applies a profile's `consent` object: the channels it names change, others stay.
pub fn update(consent: &mut Consent, changes: &[(String, bool)]) {
    for (channel, given) in changes {
        match consent.iter_mut().find(|(c, _)| c == channel) {
            Some(slot) => slot.1 = *given,
            None => consent.push((channel.clone(), *given)),
        }
    }
}

/// `Ok` when `channel` has consent `true`; otherwise why not, in words.
pub fn check(consent: Option<&Consent>, channel: &str) -> Result<(), String> {
    match consent.and_then(|c| c.iter().find(|(ch, _)| ch == channel)) {
        Some((_, true)) => Ok(()),
        Some((_, false)) => Err(format!("consent for {channel} is false")),
        None => Err(format!("no consent for {channel} on record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_true_passes_and_updates_keep_other_channels() {
        assert!(check(None, "push").unwrap_err().contains("no consent"));
        let mut c = Consent::new();
        update(&mut c, &[("push".into(), true), ("sms".into(), false)]);
        assert!(check(Some(&c), "push").is_ok());
        assert_eq!(
            check(Some(&c), "sms").unwrap_err(),
            "consent for sms is false"
        );
        assert!(check(Some(&c), "email").is_err());
        update(&mut c, &[("push".into(), false)]);
        assert!(check(Some(&c), "push").is_err());
        assert_eq!(c.len(), 2, "sms kept");
    }
}
