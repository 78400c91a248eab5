//! The admin API of `footfall run`: read-only SQL over the workers' retained tables.
//!
//! - `POST /v1/query`: the body is the SQL (or `{"sql": "..."}`); the answer is
//!   `{"rows": [...], "row_count": n, "elapsed_ms": t}`, or an Arrow IPC stream with
//!   `Accept: application/vnd.apache.arrow.stream`. A refused query is a 400, a query
//!   over its time limit a 504, one that failed (memory limit) a 422; each with
//!   `{"error": "..."}`.
//!
//! It listens on loopback by default; wherever it listens, a configured token must come
//! as `Authorization: Bearer <token>` (a 401 otherwise).

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use footfall_sql::hub::Hub;
use footfall_sql::{Engine, Limits, QueryError, format};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The admin API's state.
pub struct Admin {
    /// Where the workers publish their tables.
    pub hub: Arc<Hub>,
    /// Each query's memory and time.
    pub limits: Limits,
    /// The bearer token requests must carry, if any.
    pub token: Option<String>,
    /// The SQL rules.
    pub rules: Arc<crate::rules::Rules>,
}

/// Arrow IPC streaming format's media type.
pub const ARROW_STREAM: &str = "application/vnd.apache.arrow.stream";

/// The routes.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/v1/query", post(query))
        .route("/v1/rules", get(list_rules))
        .route("/v1/rules/{name}", put(put_rule))
        .with_state(admin)
}

/// Serves on `listener` until `shutdown` flips.
pub async fn serve(
    listener: TcpListener,
    admin: Arc<Admin>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    axum::serve(listener, router(admin))
        .with_graceful_shutdown(async move {
            let _ = shutdown.wait_for(|s| *s).await;
        })
        .await
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Whether `headers` carry the bearer `token`, compared in constant time.
fn authorized(token: Option<&str>, headers: &HeaderMap) -> bool {
    let Some(want) = token else { return true };
    let Some(got) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let (a, b) = (want.as_bytes(), got.trim().as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn query(State(admin): State<Arc<Admin>>, headers: HeaderMap, body: Bytes) -> Response {
    if !authorized(admin.token.as_deref(), &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "this admin API needs Authorization: Bearer <admin.token>",
        );
    }
    let Ok(text) = std::str::from_utf8(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let sql = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) if v.get("sql").is_some() => match v["sql"].as_str() {
            Some(s) => s.to_owned(),
            None => return error(StatusCode::BAD_REQUEST, "\"sql\" must be a string"),
        },
        _ => text.to_owned(),
    };
    if sql.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "no query: send the SQL as the body",
        );
    }
    let (tables, clock) = admin.hub.snapshot();
    let mut engine = Engine::new(tables, admin.limits);
    if let Some(c) = clock {
        engine = engine.with_clock(c);
    }
    if let Some(live) = admin.hub.live_for(&sql).await {
        engine = engine.with_live(live);
    }
    let started = Instant::now();
    let answer = match engine.query(&sql).await {
        Ok(a) => a,
        Err(e @ QueryError::Refused(_)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ QueryError::Timeout(_)) => {
            return error(StatusCode::GATEWAY_TIMEOUT, e.to_string());
        }
        Err(e @ QueryError::Failed(_)) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
    let arrow = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains(ARROW_STREAM));
    if arrow {
        let mut buf = Vec::new();
        let written = (|| {
            let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut buf, &answer.schema)?;
            for b in &answer.batches {
                w.write(b)?;
            }
            w.finish()
        })();
        return match written {
            Ok(()) => ([(header::CONTENT_TYPE, ARROW_STREAM)], buf).into_response(),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        };
    }
    match format::json_rows(&answer) {
        Ok(rows) => axum::Json(json!({
            "rows": rows,
            "row_count": answer.rows(),
            "elapsed_ms": elapsed_ms,
        }))
        .into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

async fn list_rules(State(admin): State<Arc<Admin>>, headers: HeaderMap) -> Response {
    if !authorized(admin.token.as_deref(), &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "this admin API needs Authorization: Bearer <admin.token>",
        );
    }
    axum::Json(json!({ "rules": admin.rules.list() })).into_response()
}

/// Validates the body as rule `name`; if valid, saves it to the rules directory and
/// runs it from now on (400 with file:line:column otherwise, the old version running).
async fn put_rule(
    State(admin): State<Arc<Admin>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !authorized(admin.token.as_deref(), &headers) {
        return error(
            StatusCode::UNAUTHORIZED,
            "this admin API needs Authorization: Bearer <admin.token>",
        );
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return error(
            StatusCode::BAD_REQUEST,
            "a rule name is lowercase letters, digits and _",
        );
    }
    let Some(dir) = admin.rules.dir() else {
        return error(StatusCode::CONFLICT, "no sql.rules_dir is configured");
    };
    let Ok(text) = String::from_utf8(body.to_vec()) else {
        return error(StatusCode::BAD_REQUEST, "the body is not UTF-8");
    };
    let path = dir.join(format!("{name}.sql"));
    let status = match admin.rules.install(&path, text.clone()).await {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
    };
    // Saved whole or not at all: written aside, then renamed over the old file.
    let tmp = dir.join(format!(".{name}.sql.tmp"));
    let saved = std::fs::write(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = saved {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!(
                "the rule runs but could not be saved to {}: {e}",
                path.display()
            ),
        );
    }
    axum::Json(json!({ "rule": status })).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_must_match_exactly() {
        let mut h = HeaderMap::new();
        assert!(authorized(None, &h));
        assert!(!authorized(Some("s3cret"), &h));
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        assert!(authorized(Some("s3cret"), &h));
        assert!(!authorized(Some("s3cret2"), &h));
        h.insert(header::AUTHORIZATION, "Bearer s3creT".parse().unwrap());
        assert!(!authorized(Some("s3cret"), &h));
    }
}
