//! Reference state: stores and their latest weather, which every worker keeps whole.
//!
//! `stores` and `weather` records are broadcast to every partition worker (they are
//! few and small), so a trigger acting on a customer can look up any store: where it
//! is, its time zone, what the weather is there. The worker applies them here before
//! its operators see the event, and checkpoints this state with its own.

use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::event::{Event, EventKind, Str};
use crate::local;
use crate::state::{KeyedState, StateImage};
use crate::time::{Span, Timestamp};

/// Mean Earth radius (IUGG), metres: the great-circle distances of `triggers.md`.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance between two WGS84 points in degrees, metres (haversine).
pub fn haversine_m(lat1: f64, lon1: f64, lat2: f64, lon2: f64) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let dp = p2 - p1;
    let dl = (lon2 - lon1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// What a `store` record says about a store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// WGS84 latitude.
    pub lat: f64,
    /// WGS84 longitude.
    pub lon: f64,
    /// IANA zone name, as sent.
    pub timezone: Option<Str>,
    /// Region, for regional weather.
    pub region: Option<Str>,
}

/// A weather observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// Observed at.
    #[serde(with = "crate::time::nanos")]
    pub at: Timestamp,
    /// Temperature, °C.
    pub temp_c: f64,
    /// `clear`, `clouds`, `rain`, `snow`, `storm`, `fog`.
    pub condition: Str,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StoreEntry {
    site: Option<Site>,
    weather: Option<Observation>,
}

/// Stores and weather, as every worker sees them.
#[derive(Default)]
pub struct Reference {
    stores: KeyedState<StoreEntry>,
    regions: KeyedState<Observation>,
    /// Stores with a site, for the nearest-store search: (id, lat, lon), by id.
    sites: Vec<(Str, f64, f64)>,
}

const STORE: &str = "store:";
const REGION: &str = "region:";

impl Reference {
    /// Applies a `store` or `weather` event; false for any other event.
    pub fn apply(&mut self, event: &Event) -> bool {
        match &event.kind {
            EventKind::Store(s) => {
                let Some(id) = &event.store_id else {
                    return true;
                };
                let site = Site {
                    lat: s.lat,
                    lon: s.lon,
                    timezone: s.timezone.clone(),
                    region: s.region.clone(),
                };
                self.stores.get_or_default(id).site = Some(site);
                self.index_site(id);
                true
            }
            EventKind::Weather(w) => {
                let obs = Observation {
                    at: event.timestamp,
                    temp_c: w.temp_c,
                    condition: w.condition.clone(),
                };
                // A late observation does not replace a newer one.
                let newer = |old: &Option<Observation>| old.as_ref().is_none_or(|o| o.at <= obs.at);
                match (&event.store_id, &w.region) {
                    (Some(id), _) => {
                        let e = self.stores.get_or_default(id);
                        if newer(&e.weather) {
                            e.weather = Some(obs);
                        }
                    }
                    (None, Some(region)) => {
                        let old = self.regions.get(region).cloned();
                        if newer(&old) {
                            self.regions.insert(region, obs);
                        }
                    }
                    (None, None) => {}
                }
                true
            }
            _ => false,
        }
    }

    fn index_site(&mut self, id: &Str) {
        let Some(site) = self.stores.get(id).and_then(|e| e.site.as_ref()) else {
            return;
        };
        let row = (id.clone(), site.lat, site.lon);
        match self.sites.binary_search_by(|s| s.0.cmp(id)) {
            Ok(i) => self.sites[i] = row,
            Err(i) => self.sites.insert(i, row),
        }
    }

    /// A store's site, once its `store` record has arrived.
    pub fn site(&self, store_id: &str) -> Option<&Site> {
        self.stores.get(store_id)?.site.as_ref()
    }

    /// A store's time zone, if its record names one the database knows.
    pub fn zone(&self, store_id: &str) -> Option<Tz> {
        local::zone(self.site(store_id)?.timezone.as_deref()?)
    }

    /// The store's current weather at `now`: the newest observation for the store or its
    /// region, current for `max_age` after it was observed (so until `at + max_age`,
    /// exclusive).
    pub fn weather(&self, store_id: &str, now: Timestamp, max_age: Span) -> Option<&Observation> {
        let entry = self.stores.get(store_id)?;
        let regional = entry
            .site
            .as_ref()
            .and_then(|s| s.region.as_deref())
            .and_then(|r| self.regions.get(r));
        let newest = match (entry.weather.as_ref(), regional) {
            (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
            (a, b) => a.or(b),
        }?;
        (newest.at <= now && now < newest.at.plus(max_age)).then_some(newest)
    }

    /// The nearest store to a point within `radius_m` (ties: the smaller store id), and
    /// its distance in metres.
    pub fn nearest(&self, lat: f64, lon: f64, radius_m: f64) -> Option<(&Str, f64)> {
        // A degree of latitude is at least 110.5 km: anything further apart in latitude
        // alone cannot be within the radius.
        let max_dlat = radius_m / 110_500.0 + 1e-9;
        let mut best: Option<(&Str, f64)> = None;
        for (id, slat, slon) in &self.sites {
            if (slat - lat).abs() > max_dlat {
                continue;
            }
            let d = haversine_m(lat, lon, *slat, *slon);
            if d <= radius_m && best.is_none_or(|(_, bd)| d < bd) {
                best = Some((id, d));
            }
        }
        best
    }

    /// A checkpoint's view.
    pub fn snapshot(&self) -> Box<dyn StateImage> {
        Box::new(Prefixed(vec![
            (STORE, self.stores.image()),
            (REGION, self.regions.image()),
        ]))
    }

    /// Restores one row of [`snapshot`](Self::snapshot)'s image.
    pub fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String> {
        if let Some(id) = key.strip_prefix(STORE) {
            self.stores.restore(id, bytes)?;
            self.index_site(&Str::from(id));
            Ok(())
        } else if let Some(region) = key.strip_prefix(REGION) {
            self.regions.restore(region, bytes)
        } else {
            Err(format!("unknown reference row {key:?}"))
        }
    }

    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.stores.is_empty() && self.regions.is_empty()
    }
}

/// Several images in one, each row's key prefixed with its part's name.
pub struct Prefixed(pub Vec<(&'static str, Box<dyn StateImage>)>);

impl StateImage for Prefixed {
    fn encode(&self, out: &mut dyn FnMut(&str, &[u8])) {
        let mut key = String::new();
        for (prefix, image) in &self.0 {
            image.encode(&mut |k, v| {
                key.clear();
                key.push_str(prefix);
                key.push_str(k);
                out(&key, v);
            });
        }
    }

    fn len(&self) -> usize {
        self.0.iter().map(|(_, i)| i.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn haversine_matches_a_known_distance() {
        // Shanghai People's Square to the Bund, about 1.6 km.
        let d = haversine_m(31.2304, 121.4737, 31.2400, 121.4900);
        assert!((d - 1_893.0).abs() < 50.0, "{d}");
        // One degree of longitude on the equator: 2πR/360.
        let eq = haversine_m(0.0, 0.0, 0.0, 1.0);
        assert!((eq - 2.0 * std::f64::consts::PI * EARTH_RADIUS_M / 360.0).abs() < 1e-6);
    }
}
