//! `pao`: the command platform teams run in their CI before uploading catalog
//! items — the same validator the ingest function runs.
//!
//! Exit status: 0 when everything is valid, 1 when a file has errors, 2 when
//! the command could not run (unreadable path, bad arguments).

mod catalog;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "pao",
    version,
    about = "PAO, the Platform Automation Orchestrator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with catalog items.
    Catalog {
        #[command(subcommand)]
        command: CatalogCommand,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Validate catalog items: files, or folders searched for *.yaml and *.yml.
    Validate {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[arg(long, value_enum, default_value_t = Format::Human)]
        format: Format,
    },
    /// Print the form an item becomes: its JSON Schema and uiSchema.
    Schema { file: PathBuf },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Human,
    Json,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Catalog {
            command: CatalogCommand::Validate { paths, format },
        } => catalog::validate(&paths, format),
        Command::Catalog {
            command: CatalogCommand::Schema { file },
        } => catalog::schema(&file),
    }
}
