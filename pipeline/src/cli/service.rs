//! `footfall run`: the live service.

use anyhow::Context as _;
use footfall_pipeline::config::Config;
use footfall_pipeline::log::Log;
use footfall_pipeline::runtime::clock::Mode;
use footfall_pipeline::runtime::{self, RunOptions};
use footfall_pipeline::server;
use tokio::sync::watch;

use super::report::print_summary;

/// `footfall run`: the service with its HTTP endpoints, the admin API and SQL rules,
/// until SIGTERM or Ctrl-C.
pub async fn run_service(cfg: Config) -> anyhow::Result<()> {
    let log = Log::open(&cfg.transport.data_dir, cfg.log.clone())?;
    let (stop, shutdown) = watch::channel(false);
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot bind {}", cfg.server.listen))?;
    let ready = server::Readiness::default();
    let http = tokio::spawn(server::serve(listener, ready.clone(), shutdown.clone()));
    let hub = std::sync::Arc::new(footfall_sql::hub::Hub::default());
    let admin_listener = tokio::net::TcpListener::bind(&cfg.admin.listen)
        .await
        .with_context(|| format!("admin.listen: cannot bind {}", cfg.admin.listen))?;
    let limits = footfall_pipeline::sql::limits(&cfg.sql);
    let rules = std::sync::Arc::new(
        footfall_pipeline::rules::Rules::new(
            cfg.sql.rules_dir.clone(),
            cfg.sql.rule_failures_to_quarantine,
            limits,
        )
        .with_state(cfg.transport.data_dir.join("rules-state.json"))
        .with_cache(usize::try_from(cfg.sql.rule_cache_bytes).unwrap_or(usize::MAX)),
    );
    rules.reload().await;
    let priorities = rules.priorities();
    let (rule_tx, rule_rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(footfall_pipeline::rules::run(
        rules.clone(),
        hub.clone(),
        rule_tx,
        shutdown.clone(),
    ));
    let admin = std::sync::Arc::new(footfall_pipeline::admin::Admin {
        hub: hub.clone(),
        limits,
        token: cfg.admin.token.clone(),
        rules,
    });
    let admin_http = tokio::spawn(footfall_pipeline::admin::serve(
        admin_listener,
        admin,
        shutdown.clone(),
    ));
    tracing::info!(listen = %cfg.admin.listen, "admin API (SQL) listening");
    tracing::info!(listen = %cfg.server.listen, data_dir = %cfg.transport.data_dir.display(), "footfall running");
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: flushing output");
        let _ = stop.send(true);
    });
    ready.set(true);
    let summary = runtime::run(
        &cfg,
        &log,
        RunOptions {
            mode: Mode::Live,
            until: None,
            rate: None,
            shutdown,
            exit_at_end: false,
            sql: Some(hub.clone()),
            rule_actions: Some(rule_rx),
            // Rules arbitrate with their running version's priority unless
            // [policy.priority] names them.
            rule_priorities: Some(priorities),
            without_policies: false,
            without_identity: false,
            exiting: true,
        },
    )
    .await;
    ready.set(false);
    let _ = http.await;
    let _ = admin_http.await;
    let summary = summary?;
    print_summary(&summary, &mut std::io::stderr())?;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
