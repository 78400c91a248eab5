//! The domain part of footfall's config file: `[triggers.*]` and `[policy]`.
//!
//! Paths, names and units are fixed by `docs/config.md`; every key has a default, and
//! an unknown key is an error naming it.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::triggers::abandoned_cart::AbandonedCartConfig;

/// `[triggers]`: one section per trigger.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TriggersConfig {
    /// `[triggers.abandoned_cart]`.
    pub abandoned_cart: AbandonedCartConfig,
    /// `[triggers.birthday]`.
    pub birthday: BirthdayConfig,
    /// `[triggers.weather_promo]`.
    pub weather_promo: WeatherPromoConfig,
    /// `[triggers.stale_stock]` (markdowns and markdown offers).
    pub stale_stock: StaleStockConfig,
    /// `[triggers.churn_risk]`.
    pub churn_risk: ChurnRiskConfig,
    /// `[triggers.return_abuse]`.
    pub return_abuse: ReturnAbuseConfig,
}

/// `[triggers.birthday]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BirthdayConfig {
    /// Whether the trigger runs.
    pub enabled: bool,
    /// Local time of day to send, `HH:MM`.
    pub send_at_local: String,
    /// Days before the birthday.
    pub days_before: u32,
    /// `feb28` or `mar1`: where a 29 February birthday falls in other years.
    pub leap_day: LeapDay,
    /// Zone for customers with neither a profile nor a home-store zone.
    pub default_timezone: String,
    /// Channel.
    pub channel: String,
}

impl Default for BirthdayConfig {
    fn default() -> Self {
        BirthdayConfig {
            enabled: true,
            send_at_local: "09:00".into(),
            days_before: 0,
            leap_day: LeapDay::Feb28,
            default_timezone: "UTC".into(),
            channel: "push".into(),
        }
    }
}

/// Where a 29 February birthday falls in a common year.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LeapDay {
    /// 28 February.
    Feb28,
    /// 1 March.
    Mar1,
}

/// `[triggers.weather_promo]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WeatherPromoConfig {
    /// Whether the trigger runs.
    pub enabled: bool,
    /// A ping places a customer at the nearest store within this distance, metres.
    pub radius_m: f64,
    /// How long a weather observation stays current, seconds.
    pub max_weather_age_secs: u64,
    /// Channel.
    pub channel: String,
    /// The campaigns (default: `hot_day` and `rainy_day`; `campaigns = []` for none).
    pub campaigns: Vec<WeatherCampaign>,
}

impl Default for WeatherPromoConfig {
    fn default() -> Self {
        WeatherPromoConfig {
            enabled: true,
            radius_m: 500.0,
            max_weather_age_secs: 10_800,
            channel: "push".into(),
            campaigns: vec![
                WeatherCampaign {
                    name: "hot_day".into(),
                    temp_c_min: Some(30.0),
                    temp_c_max: None,
                    conditions: None,
                    template: "cold_drinks".into(),
                },
                WeatherCampaign {
                    name: "rainy_day".into(),
                    temp_c_min: None,
                    temp_c_max: None,
                    conditions: Some(vec!["rain".into(), "storm".into()]),
                    template: "umbrellas".into(),
                },
            ],
        }
    }
}

/// `[[triggers.weather_promo.campaigns]]`: fires when every condition it names holds.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WeatherCampaign {
    /// Campaign name, in `payload.campaign`.
    pub name: String,
    /// `temp_c >= temp_c_min`.
    pub temp_c_min: Option<f64>,
    /// `temp_c <= temp_c_max`.
    pub temp_c_max: Option<f64>,
    /// `condition` is one of these.
    pub conditions: Option<Vec<String>>,
    /// Template.
    pub template: String,
}

/// `[triggers.stale_stock]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StaleStockConfig {
    /// Whether the trigger runs.
    pub enabled: bool,
    /// Days without a sale that make a lot without `expires_at` a slow mover.
    pub slow_days: u32,
    /// Minimum on hand for a slow-mover markdown.
    pub slow_min_on_hand: u64,
    /// Slow-mover discount, percent.
    pub slow_discount_pct: u32,
    /// Markdowns of at least this percent also make customer offers.
    pub offer_min_pct: u32,
    /// At most this many offers per markdown.
    pub offer_max_customers: u32,
    /// The default schedule.
    pub schedule: Vec<MarkdownStep>,
    /// Per-category schedules.
    pub categories: BTreeMap<String, Vec<MarkdownStep>>,
}

impl Default for StaleStockConfig {
    fn default() -> Self {
        StaleStockConfig {
            enabled: true,
            slow_days: 14,
            slow_min_on_hand: 10,
            slow_discount_pct: 20,
            offer_min_pct: 30,
            offer_max_customers: 200,
            schedule: vec![
                MarkdownStep {
                    hours_before_expiry: 6.0,
                    discount_pct: 30,
                },
                MarkdownStep {
                    hours_before_expiry: 2.0,
                    discount_pct: 50,
                },
            ],
            categories: BTreeMap::new(),
        }
    }
}

/// One markdown step.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MarkdownStep {
    /// Hours before `expires_at`.
    pub hours_before_expiry: f64,
    /// Discount, percent.
    pub discount_pct: u32,
}

/// `[triggers.churn_risk]`: BG/NBD parameters and the P(alive) threshold.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ChurnRiskConfig {
    /// Whether the trigger runs.
    pub enabled: bool,
    /// BG/NBD `r`.
    pub r: f64,
    /// BG/NBD `alpha`.
    pub alpha: f64,
    /// BG/NBD `a`.
    pub a: f64,
    /// BG/NBD `b`.
    pub b: f64,
    /// Fires when P(alive) falls below this.
    pub threshold: f64,
    /// Channel.
    pub channel: String,
}

impl Default for ChurnRiskConfig {
    fn default() -> Self {
        ChurnRiskConfig {
            enabled: true,
            r: 0.2426,
            alpha: 4.4135,
            a: 0.7929,
            b: 2.4259,
            threshold: 0.3,
            channel: "push".into(),
        }
    }
}

/// `[triggers.return_abuse]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReturnAbuseConfig {
    /// Whether the trigger runs.
    pub enabled: bool,
    /// Sliding window, days.
    pub window_days: u32,
    /// Refunds in the window that fire.
    pub min_refunds: u32,
    /// Days between alerts for one customer.
    pub cooldown_days: u32,
}

impl Default for ReturnAbuseConfig {
    fn default() -> Self {
        ReturnAbuseConfig {
            enabled: true,
            window_days: 7,
            min_refunds: 3,
            cooldown_days: 7,
        }
    }
}

/// `[policy]`: delivery policies between triggers and output topics.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PolicyConfig {
    /// `false`: actions get their holdout group and are deduplicated, nothing else
    /// (for testing triggers alone).
    pub enabled: bool,
    /// Customers whose bucket is below this (basis points) are the control group.
    pub holdout_bp: u16,
    /// Arbitration window, seconds.
    pub arbitration_window_secs: u64,
    /// Attribution window for lift, days.
    pub attribution_window_days: u32,
    /// Start of local quiet hours, `HH:MM`.
    pub quiet_hours_start: String,
    /// End of local quiet hours, `HH:MM`.
    pub quiet_hours_end: String,
    /// Priority per trigger; higher wins arbitration.
    pub priority: BTreeMap<String, i32>,
    /// Frequency caps.
    pub frequency_caps: Vec<FrequencyCap>,
    /// Per trigger, a control share replacing `holdout_bp` for its actions.
    pub trigger_holdout_bp: BTreeMap<String, u16>,
    /// Zone of customers with neither a profile zone nor a home store's (default: the
    /// birthday trigger's `default_timezone`).
    pub default_timezone: Option<String>,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            enabled: true,
            trigger_holdout_bp: BTreeMap::new(),
            default_timezone: None,
            holdout_bp: 500,
            arbitration_window_secs: 60,
            attribution_window_days: 7,
            quiet_hours_start: "21:00".into(),
            quiet_hours_end: "08:00".into(),
            priority: [
                ("abandoned_cart", 50),
                ("birthday", 40),
                ("weather_promo", 30),
                ("markdown_offer", 20),
                ("churn_risk", 10),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
            frequency_caps: vec![
                FrequencyCap {
                    channel: "push".into(),
                    max: 1,
                    per: CapPeriod::Day,
                },
                FrequencyCap {
                    channel: "push".into(),
                    max: 3,
                    per: CapPeriod::Week,
                },
            ],
        }
    }
}

/// `[[policy.frequency_caps]]`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FrequencyCap {
    /// The channel it limits.
    pub channel: String,
    /// At most this many actions...
    pub max: u32,
    /// ...per local calendar day or ISO week.
    pub per: CapPeriod,
}

/// A frequency-cap period, in the customer's local calendar.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CapPeriod {
    /// A local calendar day.
    Day,
    /// An ISO week (Monday 00:00).
    Week,
}

/// Checks `HH:MM`.
pub fn parse_hhmm(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("{s:?} is not a local time HH:MM");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok((h, m))
}
