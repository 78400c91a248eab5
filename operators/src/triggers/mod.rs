//! The built-in triggers, one file each. Adding a trigger: its file, one line in
//! [`build`], one field in [`TriggersConfig`](crate::config::TriggersConfig).

pub mod abandoned_cart;
pub mod birthday;
pub mod churn_risk;
pub mod return_abuse;
pub mod stale_stock;
pub mod weather_promo;

#[cfg(test)]
mod properties;

use crate::config::TriggersConfig;
use crate::operator::Operator;

/// The enabled triggers, in registration order (which is also their operator number).
pub fn build(cfg: &TriggersConfig) -> Vec<Box<dyn Operator>> {
    let mut ops: Vec<Box<dyn Operator>> = Vec::new();
    if cfg.abandoned_cart.enabled {
        ops.push(Box::new(abandoned_cart::AbandonedCart::new(
            &cfg.abandoned_cart,
        )));
    }
    if cfg.birthday.enabled {
        ops.push(Box::new(birthday::Birthday::new(&cfg.birthday)));
    }
    if cfg.churn_risk.enabled {
        ops.push(Box::new(churn_risk::ChurnRisk::new(&cfg.churn_risk)));
    }
    if cfg.return_abuse.enabled {
        ops.push(Box::new(return_abuse::ReturnAbuse::new(&cfg.return_abuse)));
    }
    if cfg.stale_stock.enabled {
        ops.push(Box::new(stale_stock::StaleStock::new(&cfg.stale_stock)));
    }
    if cfg.weather_promo.enabled {
        ops.push(Box::new(weather_promo::WeatherPromo::new(
            &cfg.weather_promo,
        )));
    }
    ops
}
