//! `uip-cache`: the caching reverse proxy.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use uip_cache_core::config::LogFormat;
use uip_cache_core::{CacheConfig, HttpCache, PolicySet};
use uip_cache_server::proxy::Upstream;
use uip_cache_server::server::{serve, signal};

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
        /// Listen address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// The backend, http://host:port (overrides server.upstream).
        #[arg(long)]
        upstream: Option<String>,
        /// Admin API address (overrides admin.listen).
        #[arg(long)]
        admin: Option<SocketAddr>,
    },
    /// Validate a config and print its compiled policies; exit 1 with every error.
    CheckConfig {
        /// The config file (YAML).
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Serve {
            config,
            listen,
            upstream,
            admin,
        } => {
            if admin.is_some() {
                eprintln!("uip-cache: --admin: the admin API is not built yet; serving without it");
            }
            let config = match CacheConfig::from_file(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            init_logging(&config);
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
            match runtime.block_on(run(config, listen, upstream)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("uip-cache: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn run(
    config: CacheConfig,
    listen: Option<SocketAddr>,
    upstream: Option<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let upstream = upstream
        .or_else(|| config.server.upstream.clone())
        .ok_or("no upstream: pass --upstream http://host:port or set server.upstream")?;
    let upstream: http::Uri = upstream
        .parse()
        .map_err(|e| format!("--upstream `{upstream}`: {e}"))?;
    if upstream.scheme_str() != Some("http") || upstream.authority().is_none() {
        return Err(format!("--upstream `{upstream}`: expected http://host:port").into());
    }
    let listen = match listen {
        Some(l) => l,
        None => config.server.listen.parse()?,
    };
    let cache = build_cache(&config)?;
    let server = &config.server;
    let upstream_client = Upstream::new(
        upstream.clone(),
        server.connect_timeout.get(),
        server.timeout.get(),
    );
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(listen = %listener.local_addr()?, %upstream, "uip-cache serving");
    serve(
        listener,
        cache,
        upstream_client,
        server.shutdown_grace.get(),
        signal(),
    )
    .await?;
    Ok(())
}

fn build_cache(config: &CacheConfig) -> Result<HttpCache, uip_cache_core::ConfigError> {
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
        let ttl = p.ttl().map_or("origin freshness only".to_owned(), |t| {
            format!("{}s", t.as_secs())
        });
        println!(
            "  {:<24} {:<48} ttl {:<10} key {:?} tags {:?}",
            p.name(),
            c.pattern.value,
            ttl,
            p.key_spec(),
            p.tags()
        );
    }
    for w in config.warnings() {
        println!("warning: {}:{w}", file.display());
    }
    ExitCode::SUCCESS
}
