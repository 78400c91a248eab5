//! Step 2, consent: an action on a channel whose consent is not `true` is suppressed
//! (`no_consent`). Checked when the action arrives and again when an action held for
//! quiet hours is released.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The channels the spec names, kept in two bits each.
const KNOWN: [&str; 3] = ["push", "sms", "email"];

/// A customer's consent per channel, as their latest profile fields left it (or the
/// channels one profile states). `push`, `sms` and `email` take two bits each, inline;
/// any other channel is kept by name. In checkpoints it is a list of (channel, given).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Consent {
    /// Per known channel, two bits: 0 not stated, 2 false, 3 true.
    known: u8,
    /// Other channels, by name: rare, so behind one thin pointer (8 bytes, where a
    /// `Vec` takes 24 in every customer's state).
    #[allow(clippy::box_collection)]
    other: Option<Box<Vec<(String, bool)>>>,
}

impl Consent {
    /// The known channels' consent, two bits each (for reading ahead).
    pub(super) fn bits(&self) -> u8 {
        self.known
    }

    /// The consent stated for `channel`, if any.
    pub fn get(&self, channel: &str) -> Option<bool> {
        match KNOWN.iter().position(|k| *k == channel) {
            Some(i) => match (self.known >> (2 * i)) & 3 {
                0 => None,
                bits => Some(bits == 3),
            },
            None => self.others().find(|(c, _)| c == channel).map(|(_, g)| *g),
        }
    }

    /// States `given` for `channel`.
    pub fn set(&mut self, channel: &str, given: bool) {
        match KNOWN.iter().position(|k| *k == channel) {
            Some(i) => {
                self.known &= !(3 << (2 * i));
                self.known |= (2 | u8::from(given)) << (2 * i);
            }
            None => {
                let other = self.other.get_or_insert_default();
                match other.iter_mut().find(|(c, _)| c == channel) {
                    Some(slot) => slot.1 = given,
                    None => other.push((channel.to_owned(), given)),
                }
            }
        }
    }

    /// Every channel stated, with its consent.
    pub fn iter(&self) -> impl Iterator<Item = (&str, bool)> {
        let known = KNOWN.iter().filter_map(|c| self.get(c).map(|g| (*c, g)));
        known.chain(self.others().map(|(c, g)| (c.as_str(), *g)))
    }

    fn others(&self) -> impl Iterator<Item = &(String, bool)> {
        self.other.iter().flat_map(|o| o.iter())
    }
}

impl<S: AsRef<str>> FromIterator<(S, bool)> for Consent {
    fn from_iter<I: IntoIterator<Item = (S, bool)>>(iter: I) -> Self {
        let mut c = Consent::default();
        for (channel, given) in iter {
            c.set(channel.as_ref(), given);
        }
        c
    }
}

impl Serialize for Consent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        // With its length first: postcard cannot encode a list of unknown length.
        let mut seq = s.serialize_seq(Some(self.iter().count()))?;
        for item in self.iter() {
            seq.serialize_element(&item)?;
        }
        seq.end()
    }
}

impl<'de> Deserialize<'de> for Consent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Vec::<(String, bool)>::deserialize(d)?.into_iter().collect())
    }
}

/// Applies a profile's `consent` object: the channels it names change, others stay.
pub fn update(consent: &mut Consent, changes: &Consent) {
    // The known channels `changes` states: both bits of each set in `mask`.
    let stated = (changes.known | (changes.known >> 1)) & 0b01_0101;
    let mask = stated * 3;
    consent.known = (consent.known & !mask) | changes.known;
    for (channel, given) in changes.others() {
        consent.set(channel, *given);
    }
}

/// `Ok` when `channel` has consent `true`; otherwise why not, in words.
pub fn check(consent: Option<&Consent>, channel: &str) -> Result<(), String> {
    match consent.and_then(|c| c.get(channel)) {
        Some(true) => Ok(()),
        Some(false) => Err(format!("consent for {channel} is false")),
        None => Err(format!("no consent for {channel} on record")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_explicit_true_passes_and_updates_keep_other_channels() {
        assert!(check(None, "push").unwrap_err().contains("no consent"));
        let mut c = Consent::default();
        update(
            &mut c,
            &[("push", true), ("sms", false)].into_iter().collect(),
        );
        assert!(check(Some(&c), "push").is_ok());
        assert_eq!(
            check(Some(&c), "sms").unwrap_err(),
            "consent for sms is false"
        );
        assert!(check(Some(&c), "email").is_err());
        update(&mut c, &[("push", false)].into_iter().collect());
        assert!(check(Some(&c), "push").is_err());
        assert_eq!(c.iter().count(), 2, "sms kept");
    }

    #[test]
    fn other_channels_are_kept_by_name_and_checkpoints_read_the_list_form() {
        let mut c: Consent = [("whatsapp", true), ("email", false)].into_iter().collect();
        c.set("whatsapp", false);
        c.set("line", true);
        assert_eq!(c.get("whatsapp"), Some(false));
        assert_eq!(c.get("line"), Some(true));
        assert_eq!(c.get("push"), None);
        // The list form earlier checkpoints hold, in JSON and postcard.
        let list = vec![
            ("push".to_string(), true),
            ("whatsapp".to_string(), false),
            ("sms".to_string(), false),
        ];
        let json: Consent = serde_json::from_value(serde_json::json!(list)).unwrap();
        let bytes = postcard::to_allocvec(&list).unwrap();
        let from_postcard: Consent = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(json, from_postcard);
        assert_eq!(json.get("push"), Some(true));
        assert_eq!(json.get("sms"), Some(false));
        assert_eq!(json.get("whatsapp"), Some(false));
        let back: Consent = postcard::from_bytes(&postcard::to_allocvec(&json).unwrap()).unwrap();
        assert_eq!(back, json);
    }
}
