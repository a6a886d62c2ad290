//! `omsg`: call, cast, notify, listen, serve, ping and bench over any transport URL, and calls
//! checked against a typed service's AsyncAPI document (`api-call`).
//!
//! Exit codes scripts can rely on: 0 success, 1 remote error, 2 timeout (or no server, failing
//! fast), 3 any other messaging failure (connection, delivery, …), 64 bad usage or input (bad
//! URL, bad JSON). Every transport opened is closed before exit; `serve`, `listen` and
//! `bench` stop gracefully on SIGINT or SIGTERM.

mod api;
mod bench;
mod metrics;
mod notify;
mod rpc;
mod stats;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use messaging::{Context, MessagingError, Priority};
use serde_json::Value;

/// Operate RPC and notifications over any transport URL (memory://, rabbit://, kafka://, amqp://).
#[derive(Debug, Parser)]
#[command(name = "omsg", version, about)]
struct Cli {
    /// Transport URL for RPC (and for notifications when --notify-url is not given).
    #[arg(long, global = true, env = "OSLO_RPC_URL")]
    url: Option<String>,

    /// Transport URL for notifications.
    #[arg(long, global = true, env = "OSLO_NOTIFY_URL")]
    notify_url: Option<String>,

    /// Exchange (oslo's control_exchange) for targets [default: the config's, else openstack].
    #[arg(long, global = true)]
    exchange: Option<String>,

    /// Serve the library's metrics in Prometheus text format at http://ADDR/metrics while
    /// the command runs (e.g. 127.0.0.1:9464; port 0 picks one, printed on stderr). Meant
    /// for serve, listen and bench.
    #[arg(long, global = true, env = "OMSG_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<String>,

    /// An oslo-style INI file ([DEFAULT] transport_url, [oslo_messaging_notifications], driver
    /// sections); --url and --notify-url override its URLs.
    #[arg(long, global = true, env = "OSLO_CONFIG_FILE")]
    config: Option<std::path::PathBuf>,

    /// Log more: -v info, -vv debug, -vvv trace (warnings are shown by default; RUST_LOG,
    /// when set, decides instead).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Log less: -q errors only, -qq nothing.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    quiet: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Call METHOD on TOPIC and print the result as JSON.
    Call(rpc::CallArgs),
    /// Cast METHOD to TOPIC (one server, a named server, or every server with --fanout).
    Cast(rpc::CastArgs),
    /// Ping the servers of TOPIC (they must enable ping; `omsg serve` does) and print round trips.
    Ping(rpc::PingArgs),
    /// Serve a demo endpoint: echo(value), fail(), sleep(seconds).
    Serve(rpc::ServeArgs),
    /// Send one notification.
    Notify(notify::NotifyArgs),
    /// Print notifications of TOPIC as JSON lines.
    Listen(notify::ListenArgs),
    /// Generate load and report throughput, latency percentiles and CPU per message.
    Bench(bench::BenchArgs),
    /// Print the transport URL schemes this build supports, as a JSON array.
    Schemes,
    /// Print the options of DRIVER (a name or URL scheme: rabbit, amqp, kafka, …), one JSON
    /// object per line: name, kind, default (null: none) and help.
    Options {
        /// The driver's name or URL scheme.
        driver: String,
    },
    /// Call (or cast) METHOD as a typed service's AsyncAPI document describes it: arguments
    /// checked before sending, namespace and version from the document.
    ApiCall(api::ApiCallArgs),
}

/// What went wrong, mapped to an exit code.
#[derive(Debug)]
enum Failure {
    Messaging(MessagingError),
    Usage(String),
    /// Nothing arrived in time (exit code 2, as a timeout).
    TimedOut(String),
}

impl From<MessagingError> for Failure {
    fn from(error: MessagingError) -> Self {
        match error {
            MessagingError::InvalidUrl { .. }
            | MessagingError::UnknownScheme { .. }
            | MessagingError::UnknownOption { .. }
            | MessagingError::InvalidOption { .. }
            | MessagingError::InvalidConfig { .. }
            | MessagingError::InvalidTarget(_) => Failure::Usage(error.to_string()),
            other => Failure::Messaging(other),
        }
    }
}

impl Failure {
    fn report(&self) -> ExitCode {
        match self {
            Failure::Usage(message) => {
                eprintln!("omsg: {message}");
                ExitCode::from(64)
            }
            Failure::TimedOut(message) => {
                eprintln!("omsg: {message}");
                ExitCode::from(2)
            }
            Failure::Messaging(MessagingError::Remote(remote)) => {
                eprintln!("{}: {}", remote.class, remote.message);
                ExitCode::from(1)
            }
            Failure::Messaging(
                error @ (MessagingError::NoSuchMethod { .. }
                | MessagingError::UnsupportedVersion { .. }),
            ) => {
                eprintln!("{error}");
                ExitCode::from(1)
            }
            Failure::Messaging(
                error @ (MessagingError::Timeout { .. }
                | MessagingError::SendTimeout { .. }
                | MessagingError::NoServer { .. }),
            ) => {
                eprintln!("omsg: {error}");
                ExitCode::from(2)
            }
            Failure::Messaging(error) => {
                eprintln!("omsg: {error}");
                ExitCode::from(3)
            }
        }
    }
}

type Outcome = Result<(), Failure>;

/// A transport a command opened, closed before the process exits.
#[derive(Debug)]
enum Opened {
    Rpc(messaging::RpcTransport),
    Notifications(messaging::NotificationTransport),
}

/// Where to send: the URLs and exchange every command uses, and the transports opened.
#[derive(Debug, Clone)]
struct Endpoints {
    rpc_url: String,
    notify_url: String,
    exchange: String,
    options: messaging::TransportOptions,
    opened: Arc<Mutex<Vec<Opened>>>,
}

impl Endpoints {
    fn from_cli(cli: &Cli) -> Result<Self, Failure> {
        let config = cli.config.as_ref().map(messaging::load_ini).transpose()?;
        let rpc_url = cli
            .url
            .clone()
            .or_else(|| config.as_ref().map(|c| c.transport_url.clone()))
            .or_else(|| cli.notify_url.clone())
            .ok_or_else(|| {
                Failure::Usage(
                    "no transport URL: pass --url or --config, or set OSLO_RPC_URL".into(),
                )
            })?;
        let notify_url = cli
            .notify_url
            .clone()
            .or_else(|| {
                config
                    .as_ref()
                    .and_then(|c| c.notifications.transport_url.clone())
            })
            .unwrap_or_else(|| rpc_url.clone());
        let mut options = config.map(|c| c.transport_options()).unwrap_or_default();
        if let Some(exchange) = &cli.exchange {
            options.control_exchange = exchange.clone();
        }
        Ok(Self {
            rpc_url,
            notify_url,
            exchange: options.control_exchange.clone(),
            options,
            opened: Arc::default(),
        })
    }

    fn options(&self) -> messaging::TransportOptions {
        self.options.clone()
    }

    fn opened(&self) -> std::sync::MutexGuard<'_, Vec<Opened>> {
        self.opened.lock().expect("opened transports poisoned")
    }

    async fn rpc(&self) -> Result<messaging::RpcTransport, Failure> {
        let transport = messaging::get_rpc_transport_with(&self.rpc_url, &self.options()).await?;
        self.opened().push(Opened::Rpc(transport.clone()));
        Ok(transport)
    }

    async fn notifications(&self) -> Result<messaging::NotificationTransport, Failure> {
        let transport =
            messaging::get_notification_transport_with(&self.notify_url, &self.options()).await?;
        self.opened().push(Opened::Notifications(transport.clone()));
        Ok(transport)
    }

    /// Close every transport opened, so that connections end cleanly (a transport merely
    /// dropped as the process exits would be cut off mid-connection).
    async fn close(&self) {
        let opened = std::mem::take(&mut *self.opened());
        for transport in opened {
            match transport {
                Opened::Rpc(t) => t.close().await,
                Opened::Notifications(t) => t.close().await,
            }
        }
    }
}

/// Catch SIGINT (Ctrl-C) and SIGTERM from now on (even when the shell started the process in
/// the background with SIGINT ignored); the future completes at the first of them.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, Failure> {
    let failed = |e: std::io::Error| Failure::Usage(format!("cannot catch signals: {e}"));
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).map_err(failed)?;
        let mut terminate = signal(SignalKind::terminate()).map_err(failed)?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = failed;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

/// Parse a JSON argument, naming it in the error.
fn parse_json(what: &str, text: &str) -> Result<Value, Failure> {
    serde_json::from_str(text).map_err(|e| Failure::Usage(format!("{what} is not valid JSON: {e}")))
}

/// Parse a JSON object argument into a context.
fn parse_context(text: Option<&str>) -> Result<Context, Failure> {
    match text.map(|t| parse_json("--context", t)).transpose()? {
        None => Ok(Context::new()),
        Some(Value::Object(map)) => Ok(Context(map)),
        Some(_) => Err(Failure::Usage("--context must be a JSON object".into())),
    }
}

fn parse_priority(text: &str) -> Result<Priority, String> {
    text.parse().map_err(|e: MessagingError| e.to_string())
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| format!("`{text}` is not a number of seconds"))
}

/// `omsg options DRIVER`: the driver's declared options with their defaults.
fn print_options(driver: &str) -> Outcome {
    messaging::install_default_drivers();
    let driver = match messaging::driver_named(driver) {
        Some(driver) => driver,
        None => messaging::driver_for_scheme(driver)?,
    };
    let defaults = driver.option_defaults();
    for spec in driver.options() {
        let default = defaults.iter().find(|(name, _)| *name == spec.name);
        print_json(&serde_json::json!({
            "name": spec.name,
            "kind": spec.kind.to_string(),
            "default": default.and_then(|(_, value)| value.clone()),
            "help": spec.help,
        }));
    }
    Ok(())
}

fn print_json(value: &Value) {
    println!("{value}");
}

/// Logs go to stderr: warnings and errors by default, more with `-v`, less with `-q`, and
/// whatever `RUST_LOG` says when it is set (e.g. `RUST_LOG=messaging_core=debug`). lapin's
/// own logs stay hidden unless asked for with `-v`: it warns about every message RabbitMQ
/// returns (which the rabbit driver handles) and repeats the driver's connection errors.
fn init_logging(verbose: u8, quiet: u8) {
    let level = match (verbose, quiet) {
        (0, 0) => "warn,lapin=off",
        (0, 1) => "error,lapin=off",
        (0, _) => "off",
        (1, _) => "info",
        (2, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let usage = error.use_stderr();
            let _ = error.print();
            return if usage {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
    if let Command::Schemes = cli.command {
        print_json(&Value::from(messaging::available_schemes()));
        return ExitCode::SUCCESS;
    }
    if let Command::Options { driver } = &cli.command {
        return match print_options(driver) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => failure.report(),
        };
    }
    let outcome = match Endpoints::from_cli(&cli) {
        Ok(endpoints) => {
            if let Some(addr) = &cli.metrics_addr {
                match metrics::serve(addr).await {
                    Ok(bound) => eprintln!("omsg: metrics at http://{bound}/metrics"),
                    Err(failure) => return failure.report(),
                }
            }
            let outcome = match cli.command {
                Command::Call(args) => rpc::call(&endpoints, args).await,
                Command::Cast(args) => rpc::cast(&endpoints, args).await,
                Command::Ping(args) => rpc::ping(&endpoints, args).await,
                Command::Serve(args) => rpc::serve(&endpoints, args).await,
                Command::Notify(args) => notify::notify(&endpoints, args).await,
                Command::Listen(args) => notify::listen(&endpoints, args).await,
                Command::Bench(args) => bench::run(&endpoints, args).await,
                Command::ApiCall(args) => api::api_call(&endpoints, args).await,
                Command::Schemes | Command::Options { .. } => {
                    unreachable!("handled before opening transports")
                }
            };
            endpoints.close().await;
            outcome
        }
        Err(failure) => Err(failure),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
