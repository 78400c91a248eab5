//! weather_promo → `notifications`: a campaign for the weather at the store a customer
//! is next to.
//!
//! Exactly `triggers.md`: a `location` ping places the customer at the nearest store
//! within `radius_m` (great-circle distance); that store's current weather (its newest
//! observation, or its region's, for `max_weather_age` after it was observed) is
//! checked against each configured campaign, and a campaign whose every condition holds
//! fires at most once per customer per campaign per local date of that store.
//!
//! Stores and weather are reference state every worker holds
//! ([`Reference`](crate::reference::Reference)); the state here is per customer: the
//! (campaign, store-local date) pairs already used, for the last few days.

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::action::{Action, OutputTopic};
use crate::config::{WeatherCampaign, WeatherPromoConfig};
use crate::event::{Event, EventKind, Interest, Str};
use crate::local;
use crate::operator::{Context, KeyState, Operator};
use crate::reference::Observation;
use crate::state::{KeyedState, StateImage};
use crate::time::Span;

/// The trigger's name in actions and metrics.
pub const NAME: &str = "weather_promo";
const RULE_VERSION: &str = "1";

/// The operator.
pub struct WeatherPromo {
    radius_m: f64,
    max_age: Span,
    channel: String,
    campaigns: Vec<WeatherCampaign>,
    customers: KeyedState<Customer>,
}

/// The campaigns a customer has had, by store-local date.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Customer {
    /// (campaign, store-local date as days since 1970-01-01).
    used: Vec<(Str, i64)>,
}

/// Whether `obs` meets every condition `c` names.
pub fn meets(c: &WeatherCampaign, obs: &Observation) -> bool {
    c.temp_c_min.is_none_or(|min| obs.temp_c >= min)
        && c.temp_c_max.is_none_or(|max| obs.temp_c <= max)
        && c.conditions
            .as_ref()
            .is_none_or(|cs| cs.iter().any(|k| *k == obs.condition))
}

impl WeatherPromo {
    /// The trigger as `cfg` sets it up.
    pub fn new(cfg: &WeatherPromoConfig) -> Self {
        WeatherPromo {
            radius_m: cfg.radius_m,
            max_age: Span::from_secs(
                cfg.max_weather_age_secs
                    .min(i64::MAX as u64 / 2_000_000_000) as i64,
            ),
            channel: cfg.channel.clone(),
            campaigns: cfg.campaigns.clone(),
            customers: KeyedState::default(),
        }
    }
}

impl Operator for WeatherPromo {
    fn name(&self) -> &'static str {
        NAME
    }

    fn interest(&self) -> Interest {
        // Stores and weather feed the reference state this trigger reads.
        Interest::types(&["location", "store", "weather"])
    }

    fn on_event(&mut self, event: &Event, ctx: &mut Context<'_>) {
        let EventKind::Location { lat, lon, .. } = event.kind else {
            return;
        };
        if self.campaigns.is_empty() {
            return;
        }
        let refs = ctx.reference();
        let Some((store, distance)) = refs.nearest(lat, lon, self.radius_m) else {
            return;
        };
        let t = event.timestamp;
        let Some(obs) = refs.weather(store, t, self.max_age) else {
            return;
        };
        let tz = refs.zone(store).unwrap_or(Tz::UTC);
        let date: NaiveDate = local::date(tz, t);
        let day = local::day_number(date);
        let key = ctx.key();
        for campaign in &self.campaigns {
            if !meets(campaign, obs) {
                continue;
            }
            let c = self.customers.get_or_default(key);
            if c.used.iter().any(|(n, d)| *n == campaign.name && *d == day) {
                continue;
            }
            // Dates of stores in other zones differ by a day at most: older ones are done.
            c.used.retain(|(_, d)| *d >= day - 2);
            c.used.push((Str::from(campaign.name.as_str()), day));
            let distance_m = (distance * 100.0).round() / 100.0;
            ctx.emit(Action {
                customer_id: Some(key.to_owned()),
                anonymous_id: event.anonymous_id.as_ref().map(|a| a.to_string()),
                store_id: Some(store.to_string()),
                channel: self.channel.clone(),
                template: campaign.template.clone(),
                reason: format!(
                    "{} at store {store} ({distance_m:.0} m away): {} °C, {}",
                    campaign.name, obs.temp_c, obs.condition
                ),
                payload: json!({
                    "campaign": campaign.name,
                    "store_id": store.as_str(),
                    "distance_m": distance_m,
                    "temp_c": obs.temp_c,
                    "condition": obs.condition.as_str(),
                    "local_date": date.to_string(),
                }),
                ..Action::new(
                    NAME,
                    RULE_VERSION,
                    &format!("{key}/{}", campaign.name),
                    t,
                    OutputTopic::Notifications,
                )
            });
        }
    }

    fn on_timer(&mut self, _tag: u64, _ctx: &mut Context<'_>) {}

    fn export(&mut self, ctx: &mut Context<'_>) -> Option<KeyState> {
        Some(Box::new(self.customers.remove(ctx.key())?))
    }

    fn import(&mut self, state: KeyState, ctx: &mut Context<'_>) {
        let Ok(from) = state.downcast::<Customer>() else {
            return;
        };
        let into = self.customers.get_or_default(ctx.key());
        for u in from.used {
            if !into.used.contains(&u) {
                into.used.push(u);
            }
        }
    }

    fn snapshot(&self) -> Box<dyn StateImage> {
        self.customers.image()
    }

    fn restore(&mut self, key: &str, bytes: &[u8]) -> Result<(), String> {
        self.customers.restore(key, bytes)
    }

    fn key_count(&self) -> usize {
        self.customers.len()
    }
}

#[cfg(test)]
mod tests;
