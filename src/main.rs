//! The `trigpoll` command line: parse, set up logging, run the command, map the error to an
//! exit code (0 success, 1 runtime failure, 2 usage or configuration, 3 drain with failures).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};

mod commands;

/// jemalloc rather than the C library's allocator: every event makes a few dozen small
/// allocations, many made on the claiming thread and freed on the poller's, where glibc's arenas
/// contend. A quarter less CPU for a drain, 4 MiB more memory (BENCHMARKS.md, round 3).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser)]
#[command(
    name = "trigpoll",
    version,
    about = "Capture row changes with triggers and deliver them as business objects"
)]
struct Cli {
    /// Configuration file.
    #[arg(
        long,
        global = true,
        env = "TRIGPOLL_CONFIG",
        default_value = "trigpoll.toml"
    )]
    config: PathBuf,
    /// More logging (-v debug: each batch, each retry or rejection; -vv trace: also each
    /// delivery).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors (drain's summary only when it exits 3); no progress bar.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Log line format on stderr; with json, drain's summary, prune's result and a fatal error
    /// are JSON lines too.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Create the event and archive tables if missing and install the capture triggers.
    InstallTriggers(commands::install::InstallArgs),
    /// Remove the capture triggers (and, with --drop-tables, the event and archive tables).
    UninstallTriggers(commands::install::UninstallArgs),
    /// Run until SIGINT/SIGTERM: claim, build, deliver and archive events.
    Poll(commands::poll::PollArgs),
    /// Process until no event is ready, then exit (for cron).
    Drain(commands::drain::DrainArgs),
    /// Re-enqueue archived events (without filters: the whole archive; try --dry-run first).
    Replay(commands::replay::ReplayArgs),
    /// Show the backlog, retries, failures and trigger drift.
    Status(commands::status::StatusArgs),
    /// Delete archive rows processed before a cut-off (default: sent and unsubscribed ones).
    Prune(commands::prune::PruneArgs),
    /// Validate the configuration and connector files (with --database: also the database,
    /// triggers and connectors' receivers).
    Check(commands::check::CheckArgs),
    /// Print a shell completion script.
    Completions {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Print the manual page (roff), or write one page per command into a folder.
    Man {
        /// Write trigpoll.1 and a page per subcommand into this folder.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Completions and manual pages need no configuration: they describe the command line.
fn completions(shell: Shell) -> anyhow::Result<ExitCode> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "trigpoll", &mut script);
    write_out(&script)?;
    Ok(ExitCode::SUCCESS)
}

fn man(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    // `trigpoll help` needs no page of its own: every command has one.
    let mut cli = Cli::command().disable_help_subcommand(true);
    cli.build();
    let mut page = Vec::new();
    main_page(&clap_mangen::Man::new(cli.clone()), &mut page)?;
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("trigpoll.1"), page)?;
            for command in cli.get_subcommands() {
                clap_mangen::Man::new(command.clone()).generate_to(&dir)?;
            }
        }
        None => write_out(&page)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// What clap_mangen writes for a command, with an EXIT STATUS section (man-pages(7)) before the
/// version.
fn main_page(man: &clap_mangen::Man, out: &mut Vec<u8>) -> std::io::Result<()> {
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    out.extend_from_slice(EXIT_STATUS.as_bytes());
    man.render_version_section(out)
}

const EXIT_STATUS: &str = r#".SH "EXIT STATUS"
.TP
\fB0\fR
Success.
.TP
\fB1\fR
A runtime failure: the database unreachable (\fBpoll\fR waits for a server that is down or starting), a BROKEN trigger in \fBstatus\fR, problems found by \fBcheck \-\-database\fR.
.TP
\fB2\fR
A usage or configuration error: nothing was changed.
.TP
\fB3\fR
\fBdrain\fR finished, but some events ended failed or error.
"#;

fn write_out(bytes: &[u8]) -> anyhow::Result<()> {
    commands::print(&String::from_utf8_lossy(bytes))
}

fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        _ => "trace",
    };
    // Other crates (database drivers, HTTP and broker clients) say only warnings: their debug
    // output may carry URLs with credentials. lapin only errors: it warns of every message the
    // broker returns with the whole payload in it, and trigpoll reports those as retries itself.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,lapin=error,trigpoll={level}")));
    // Colours only for a person at a terminal: not in cron mail, journals or log files.
    let colours = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(commands::LogLine::default)
        .with_ansi(colours)
        .with_target(false);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);

    let json = matches!(cli.log_format, LogFormat::Json);
    let ctx = commands::Context {
        config_path: cli.config,
        quiet: cli.quiet,
        json,
    };
    let result = match cli.command {
        Command::InstallTriggers(args) => commands::install::install(&ctx, args),
        Command::UninstallTriggers(args) => commands::install::uninstall(&ctx, args),
        Command::Poll(args) => commands::poll::run(&ctx, args),
        Command::Drain(args) => commands::drain::run(&ctx, args),
        Command::Replay(args) => commands::replay::run(&ctx, args),
        Command::Status(args) => commands::status::run(&ctx, args),
        Command::Prune(args) => commands::prune::run(&ctx, args),
        Command::Check(args) => commands::check::run(&ctx, args),
        Command::Completions { shell } => completions(shell),
        Command::Man { dir } => man(dir),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = commands::exit_code(&e);
            // A log pipeline reading JSON gets the reason as one more JSON line.
            match json {
                true => tracing::error!(exit_code = code, "{e:#}"),
                false => eprintln!("trigpoll: {e:#}"),
            }
            ExitCode::from(code)
        }
    }
}
