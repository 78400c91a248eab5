//! What the policies keep per customer, kept small: one of these is read for nearly
//! every action and fact, among a hundred thousand or more.
//!
//! The zone is parsed once, when a profile states it, not at every action. Frequency
//! counts and the latest actions, which only customers with actions have, sit behind one
//! pointer, in one allocation for the usual few. A checkpoint's row is unchanged:
//! consent, zone name, home store, counts, latest actions, as earlier versions wrote and
//! read them.

use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::consent::Consent;
use super::frequency_cap::Counts;
use super::lift::Latest;
use crate::event::Str;
use crate::local;

/// A customer's consent, zone, home store, frequency counts and latest actions.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Customer {
    pub consent: Consent,
    pub zone: Zone,
    pub home_store: Option<Str>,
    more: Option<Box<More>>,
}

/// What only customers who were sent something have.
#[derive(Clone, Debug, Default, PartialEq)]
struct More {
    caps: Counts,
    latest: Latest,
}

impl Customer {
    /// Their frequency counts, to change.
    pub fn caps_mut(&mut self) -> &mut Counts {
        &mut self.more.get_or_insert_default().caps
    }

    /// Their latest action per trigger.
    pub fn latest(&self) -> Option<&Latest> {
        self.more.as_deref().map(|m| &m.latest)
    }

    /// Their latest action per trigger, to change.
    pub fn latest_mut(&mut self) -> &mut Latest {
        &mut self.more.get_or_insert_default().latest
    }
}

/// A time zone as a profile or store names it: parsed once, the name kept when the
/// bundled database does not know it (or spells it otherwise), so it reads back as given.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) enum Zone {
    #[default]
    Unset,
    Known(Tz),
    Other(Box<Named>),
}

/// A zone named otherwise than the bundled database names it (or not known to it): the
/// name as given, and what it parsed to, once.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Named {
    name: Str,
    tz: Option<Tz>,
}

impl Zone {
    /// The zone named `name`.
    pub fn new(name: Str) -> Zone {
        match local::zone(&name) {
            Some(tz) if tz.name() == name => Zone::Known(tz),
            tz => Zone::Other(Box::new(Named { name, tz })),
        }
    }

    /// The zone, if one is named and the bundled database knows it.
    pub fn tz(&self) -> Option<Tz> {
        match self {
            Zone::Unset => None,
            Zone::Known(tz) => Some(*tz),
            Zone::Other(named) => named.tz,
        }
    }

    /// The name as given.
    pub fn name(&self) -> Option<&str> {
        match self {
            Zone::Unset => None,
            Zone::Known(tz) => Some(tz.name()),
            Zone::Other(named) => Some(&named.name),
        }
    }
}

/// A customer's checkpoint row, field for field as earlier versions wrote it.
#[derive(Serialize)]
struct Row<'a> {
    consent: &'a Consent,
    timezone: Option<&'a str>,
    home_store: &'a Option<Str>,
    caps: &'a Counts,
    latest: &'a Latest,
}

#[derive(Deserialize)]
struct OwnedRow {
    consent: Consent,
    timezone: Option<Str>,
    home_store: Option<Str>,
    caps: Counts,
    latest: Latest,
}

impl Serialize for Customer {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let none = More::default();
        let more = self.more.as_deref().unwrap_or(&none);
        Row {
            consent: &self.consent,
            timezone: self.zone.name(),
            home_store: &self.home_store,
            caps: &more.caps,
            latest: &more.latest,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Customer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let row = OwnedRow::deserialize(d)?;
        let more = More {
            caps: row.caps,
            latest: row.latest,
        };
        Ok(Customer {
            consent: row.consent,
            zone: row.timezone.map_or(Zone::Unset, Zone::new),
            home_store: row.home_store,
            more: (more != More::default()).then(|| Box::new(more)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row as versions before the compact layout wrote it: their `Customer`.
    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Earlier {
        consent: Consent,
        timezone: Option<Str>,
        home_store: Option<Str>,
        caps: Counts,
        latest: Latest,
    }

    #[test]
    fn a_customer_row_reads_and_writes_as_earlier_versions_did() {
        let earlier: Earlier = serde_json::from_value(serde_json::json!({
            "consent": [["push", true], ["whatsapp", false]],
            "timezone": "Asia/Shanghai",
            "home_store": "s-1",
            "caps": [{"channel": "push", "week": false, "period": 20412, "n": 1}],
            "latest": [{"trigger": "birthday", "action_id": "a-1", "group": "treatment", "fired_at": 7}],
        }))
        .unwrap();
        let bytes = postcard::to_allocvec(&earlier).unwrap();
        let c: Customer = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(c.zone, Zone::Known(chrono_tz::Asia::Shanghai));
        assert_eq!(c.consent.get("whatsapp"), Some(false));
        assert!(c.latest().is_some_and(|l| !l.is_empty()));
        assert_eq!(postcard::to_allocvec(&c).unwrap(), bytes);
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json, serde_json::to_value(&earlier).unwrap());
        assert_eq!(serde_json::from_value::<Customer>(json).unwrap(), c);
        // Nothing sent yet: no counts or actions are allocated, and the row is the same.
        let bare = Earlier {
            caps: Counts::default(),
            latest: Latest::default(),
            timezone: None,
            ..earlier
        };
        let c: Customer = postcard::from_bytes(&postcard::to_allocvec(&bare).unwrap()).unwrap();
        assert!(c.more.is_none() && c.zone == Zone::Unset);
        assert_eq!(
            postcard::from_bytes::<Earlier>(&postcard::to_allocvec(&c).unwrap()).unwrap(),
            bare
        );
    }

    #[test]
    fn a_zone_reads_back_as_named_and_is_parsed_once() {
        let known = Zone::new("America/New_York".into());
        assert_eq!(known, Zone::Known(chrono_tz::America::New_York));
        assert_eq!(known.name(), Some("America/New_York"));
        for odd in ["Mars/Olympus", "asia/shanghai", ""] {
            let z = Zone::new(odd.into());
            assert_eq!(z.name(), Some(odd), "read back as given");
            assert_eq!(z.tz(), local::zone(odd));
        }
        assert_eq!(Zone::Unset.tz(), None);
        // With the reference count, one 80-byte allocation; what a customer who was sent
        // something has (two counts of a channel, one trigger's action) one more of 160.
        assert!(std::mem::size_of::<Customer>() <= 64);
        assert!(std::mem::size_of::<More>() <= 160);
    }
}
