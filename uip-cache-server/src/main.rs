//! `uip-cache`: the caching reverse proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use std::sync::Arc;

use clap::{Parser, Subcommand};
use uip_cache_core::admin::Admin;
use uip_cache_core::config::{LogFormat, StoreKind};
use uip_cache_core::{CacheConfig, HttpCache, PolicySet};
use uip_cache_server::reload::{load, routes_of, Overrides, ServerReload};
use uip_cache_server::server::{serve_admin, serve_edge, signal};
use uip_cache_server::slow::ClientLimits;
use uip_cache_server::tls::client::client_config;
use uip_cache_server::tls::{Certificates, WATCH_INTERVAL};

/// The binary's allocator: mimalloc, in small pages (see
/// [`small_pages`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// No transparent huge pages for this process from here on: mimalloc asks
/// for them on the arenas it commits, and a huge page is resident whole
/// however little of it is used (11 MB more for an idle server, and a full
/// memory store of 64 MB past its bound).
#[allow(unsafe_code)]
fn small_pages() {
    let (on, zero): (libc::c_ulong, libc::c_ulong) = (1, 0);
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory
    // of ours.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, on, zero, zero, zero) } != 0 {
        // Before logging is set up: said on standard error.
        eprintln!(
            "uip-cache: transparent huge pages stay on ({}): memory may grow past the store's bound",
            std::io::Error::last_os_error()
        );
    }
}

/// A config-driven HTTP response cache in front of any backend.
#[derive(Debug, Parser)]
#[command(name = "uip-cache", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the caching reverse proxy.
    Serve {
        /// The config file (YAML).
        #[arg(long)]
        config: PathBuf,
        /// Plain-HTTP listen address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The backend, http://host:port or https://host:port (overrides
        /// server.upstream: the backend of the requests no route matches).
        #[arg(long)]
        upstream: Option<String>,
        /// Admin API address (overrides admin.listen).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// A guided tour: a built-in NGSI-LD-like origin, the proxy and the admin
    /// API on 127.0.0.1 with the memory store; then keeps serving.
    Demo {
        /// Proxy address.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Admin API address.
        #[arg(long, default_value = "127.0.0.1:9092")]
        admin: SocketAddr,
        /// Proxy address over HTTPS (a certificate made at start-up).
        #[arg(long, default_value = "127.0.0.1:8443")]
        tls_listen: SocketAddr,
        /// Exit after the tour instead of serving.
        #[arg(long)]
        exit: bool,
    },
    /// Validate a config and print its compiled policies; exit 1 with every error.
    CheckConfig {
        /// The config file (YAML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    small_pages();
    match Cli::parse().command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Demo {
            listen,
            admin,
            tls_listen,
            exit,
        } => {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
                )
                .try_init();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let addrs = uip_cache_server::demo::DemoAddrs {
                listen,
                admin,
                tls: tls_listen,
            };
            match runtime.block_on(uip_cache_server::demo::run(addrs, exit, signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("uip-cache demo: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve {
            config,
            listen,
            upstream,
            admin,
        } => {
            let file = config;
            let overrides = Overrides::new(listen, upstream, admin);
            let config = match load(&file, &overrides) {
                Ok(c) => c,
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&config);
            let runtime = match runtime(&config) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("cannot start the runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            // Certificate and CA paths are read from the config's folder.
            let base = file
                .parent()
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default();
            match runtime.block_on(run(config, file, base, overrides)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("uip-cache: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// The runtime serving requests, with `server.workers` threads (0: the
/// `TOKIO_WORKER_THREADS` environment variable when it is set, as tokio
/// reads it, or else one per core this process may run on).
///
/// With one thread it is tokio's current-thread runtime, unless the store
/// is on disk. The work-stealing scheduler's bookkeeping (shared queues,
/// waking idle workers, the main thread apart from the worker) buys
/// nothing when there is no other worker and costs every wakeup on the
/// path of a request: a pass-through runs at 1.2x the rate with 0.82x the
/// CPU, a miss at 1.08x (bench/RESULTS.md). The disk store keeps the
/// multi-thread runtime: a soft purge rewrites its entries in place, which
/// there hands the worker's other tasks to another thread instead of
/// holding every request until it is done.
fn runtime(config: &CacheConfig) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match config.server.workers {
        0 => std::env::var("TOKIO_WORKER_THREADS")
            .ok()
            .and_then(|n| n.trim().parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
            }),
        n => usize::from(n),
    };
    let mut builder = if threads == 1 && config.store.kind != StoreKind::Disk {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    builder.thread_name("uip-cache-rt").enable_all().build()
}

async fn run(
    config: CacheConfig,
    file: PathBuf,
    base: PathBuf,
    overrides: Overrides,
) -> Result<(), Box<dyn std::error::Error>> {
    let listen: Option<SocketAddr> = config.server.plain_listen().map(str::parse).transpose()?;
    let certificates = match &config.server.tls {
        Some(tls) => Some(Certificates::from_config(tls, &base)?),
        None => None,
    };
    let upstream_tls = client_config(&config.server.upstream_tls, &base)?;
    let cache = build_cache(&config)?;
    // One client per backend URL, http:// or https:// (verified per
    // server.upstream_tls); with the cache's settings, the snapshot every
    // request is routed and cached by until a reload swaps it.
    let routes = routes_of(cache.settings(), &upstream_tls, None)?;
    let server = &config.server;
    let upstream = routes
        .table()
        .routes()
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    let proxy = uip_cache_server::server::proxy(cache.clone(), routes.clone());
    let listener = match listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?,
        ),
        None => None,
    };
    let tls_listener = match &server.tls {
        Some(tls) => Some(
            tokio::net::TcpListener::bind(&tls.listen)
                .await
                .map_err(|e| format!("cannot listen on {} (server.tls.listen): {e}", tls.listen))?,
        ),
        None => None,
    };
    let admin_listen: Option<SocketAddr> = if config.admin.enabled {
        Some(config.admin.listen.parse()?)
    } else {
        None
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let when_stopped = move || {
        let mut rx = stopped.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let admin = uip_cache_server::server::admin(&proxy);
    // The whole config reloads without a restart: POST /config/reload and
    // SIGHUP (see uip_cache_server::reload).
    admin.reload_with(Arc::new(ServerReload::new(
        file,
        base,
        overrides,
        config.clone(),
        upstream_tls,
        cache,
        routes,
        certificates.clone(),
    )));
    // Handled from here on (before the log line says the server is up):
    // SIGHUP's default would end the process.
    #[cfg(unix)]
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(h) => drop(tokio::spawn(reload_on_hangup(
            h,
            admin.clone(),
            when_stopped(),
        ))),
        Err(e) => {
            tracing::warn!(error = %e, "SIGHUP cannot be handled here: reload with POST /config/reload")
        }
    }
    let admin_task = match admin_listen {
        Some(addr) => {
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen on {addr} (admin API): {e}"))?;
            tracing::info!(admin = %l.local_addr()?, "admin API serving");
            Some(tokio::spawn(serve_admin(l, admin.clone(), when_stopped())))
        }
        None => None,
    };
    admin.start()?;
    tokio::spawn(async move {
        signal().await;
        let _ = stop.send(true);
    });
    let limits = ClientLimits::from_config(server);
    if let Some(l) = &listener {
        tracing::info!(listen = %l.local_addr()?, %upstream, "uip-cache serving");
    }
    let tls = match (tls_listener, &certificates) {
        (Some(l), Some(certificates)) => {
            tracing::info!(listen = %l.local_addr()?, %upstream, names = ?certificates.names(), "uip-cache serving TLS");
            tokio::spawn(
                certificates
                    .clone()
                    .watch_files(WATCH_INTERVAL, when_stopped()),
            );
            Some((l, certificates.clone()))
        }
        _ => None,
    };
    serve_edge(
        listener,
        tls,
        server.redirect_http,
        proxy,
        limits,
        server.shutdown_grace.get(),
        when_stopped(),
    )
    .await?;
    admin.shutdown();
    if let Some(t) = admin_task {
        let _ = t.await;
    }
    Ok(())
}

/// Reloads the whole config on each SIGHUP (the certificates with it),
/// until `stop` resolves; the outcome is logged by the admin API.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    admin: Admin,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut stop = std::pin::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => return,
            got = hangups.recv() => {
                if got.is_none() {
                    return;
                }
                let _ = admin.reload("SIGHUP").await;
            }
        }
    }
}

fn build_cache(config: &CacheConfig) -> Result<HttpCache, uip_cache_core::ConfigError> {
    if config.store.kind == uip_cache_core::config::StoreKind::Disk {
        let store = uip_cache_disk::DiskStore::from_config(config);
        return Ok(uip_cache_tower::CacheLayer::builder(config.clone())
            .store(store)
            .build()?
            .cache()
            .clone());
    }
    Ok(uip_cache_tower::CacheLayer::from_config(config)?
        .cache()
        .clone())
}

fn init_logging(config: &CacheConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.logging.level));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match config.logging.format {
        LogFormat::Json => builder.json().try_init(),
        _ => builder.try_init(),
    };
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let config = match CacheConfig::from_file(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(policies) = PolicySet::compile(&config) else {
        eprintln!("{}: policies do not compile", file.display());
        return ExitCode::FAILURE;
    };
    println!("{}: ok, {} policies", file.display(), policies.len());
    for (p, c) in policies.iter().zip(&config.policies) {
        let ttl = match p.ttl() {
            Some(t) => format!("{}s ({:?} mode)", t.as_secs(), p.ttl_mode()).to_lowercase(),
            None => "origin freshness only".to_owned(),
        };
        let stale = [
            ("stale-while-revalidate", p.stale_while_revalidate()),
            ("stale-if-error", p.stale_if_error()),
        ]
        .iter()
        .filter_map(|(n, d)| d.map(|d| format!(", {n} {}s", d.as_secs())))
        .collect::<String>();
        println!("  {}", p.name());
        println!(
            "    pattern  {}{}",
            c.pattern.value,
            c.pattern_type
                .map(|t| format!(" ({t:?})").to_lowercase())
                .unwrap_or_default()
        );
        println!("    ttl      {ttl}{stale}");
        println!("    key      {}", p.key_spec());
        println!("    tags     {}", p.tag_templates().join(", "));
        if !p.invalidate_on().is_empty() {
            println!("    events   {}", p.invalidate_on().join(", "));
        }
    }
    match uip_cache_server::routes::describe(&config) {
        Ok(routes) if routes.is_empty() => {
            println!("  routes: none (serve needs --upstream, server.upstream or server.routes)")
        }
        Ok(routes) => {
            println!("  routes, the first that matches:");
            for r in routes {
                println!("    {r}");
            }
        }
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    }
    // What `serve` reads once: a reload (SIGHUP, POST /config/reload)
    // reports a change of these as needing a restart.
    println!(
        "  needs a restart to change: {}",
        uip_cache_server::reload::needs_restart_fields()
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  everything else reloads at once (SIGHUP or POST /config/reload)");
    for w in config.warnings() {
        println!("warning: {}:{w}", file.display());
    }
    ExitCode::SUCCESS
}
