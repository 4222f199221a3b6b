//! pigsty: compile a Pigsty inventory into immutable, bootable node images.
//!
//! The data flow (see DESIGN.md): [`inventory`] loads and validates YAML into the typed
//! [`model`]; [`compile`] turns one node into a [`plan::NodePlan`] and its files, which
//! [`render`] writes; [`image`] builds them into artifacts; the [`agent`] reads the
//! [`plan::node_json`] of its node on first boot.
//!
//! Layers, each using only those before it: inventory → model → plan → render →
//! compile → image → agent / lab / commands. The agent uses model and plan only.

pub mod agent;
pub mod blockmap;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod commands;
pub mod compile;
pub mod diag;
pub mod diff;
pub mod extensions;
pub mod generate;
pub mod http;
pub mod image;
pub mod inventory;
pub mod lab;
pub mod memo;
pub mod model;
pub mod pki;
pub mod plan;
pub mod render;
pub mod rollout;
pub mod serve;
pub mod sys;

/// Errors at the edge of the program, each with its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The inventory is invalid: exit 2.
    #[error(transparent)]
    Invalid(#[from] diag::Invalid),
    /// The command line asked for something that does not exist: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A value could not be written into a file format: exit 2.
    #[error(transparent)]
    Render(#[from] render::RenderError),
    /// A runtime failure (I/O, a tool, the network): exit 1.
    #[error(transparent)]
    Runtime(#[from] anyhow::Error),
    /// `diff --exit-code` found changes (already printed): exit 1, nothing more said.
    #[error("the inventory differs")]
    Differs,
}

impl Error {
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Invalid(_) | Error::Usage(_) | Error::Render(_) => 2,
            Error::Runtime(_) | Error::Differs => 1,
        }
    }
}
