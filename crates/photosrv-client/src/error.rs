//! The client's errors: what failed, where, and whether it was a timeout, a refused
//! connection or an answer.

use std::fmt;

/// What went wrong with one request to one node, or with a whole operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The config could not be used (no such datacenter, no migration ring...).
    #[error("config: {0}")]
    Config(String),
    /// The request to `url` failed in transport (connect, timeout, reset).
    #[error("{url}: {source}")]
    Transport {
        /// The node URL of the request.
        url: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// `url` answered with an unexpected status.
    #[error("{url}: HTTP {status}")]
    Status {
        /// The node URL of the request.
        url: String,
        /// The status.
        status: u16,
    },
    /// A local file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No node of the shard has the key.
    #[error("{key}: not found on any replica")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Every node failed (and not merely with 404).
    #[error("{key}: every replica failed: {}", join(.errors))]
    AllFailed {
        /// The key.
        key: String,
        /// One error per node tried.
        errors: Vec<Error>,
    },
    /// A write reached fewer nodes than the write policy needs; the report says which.
    #[error("{}", .0)]
    UnderReplicated(Box<crate::WriteReport>),
}

fn join(errors: &[Error]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl Error {
    /// A timeout, here or in any of the nodes' errors.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Transport { source, .. } => source.is_timeout(),
            Error::AllFailed { errors, .. } => errors.iter().any(Error::is_timeout),
            _ => false,
        }
    }

    /// A refused or failed connection.
    pub fn is_connect(&self) -> bool {
        match self {
            Error::Transport { source, .. } => source.is_connect(),
            Error::AllFailed { errors, .. } => errors.iter().any(Error::is_connect),
            _ => false,
        }
    }

    /// The key is on no replica.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. }) || self.status() == Some(404)
    }

    /// A write that did not meet its policy.
    pub fn is_under_replicated(&self) -> bool {
        matches!(self, Error::UnderReplicated(_))
    }

    /// The HTTP status, when a node answered with one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The node URL the error is about, when it is about one.
    pub fn url(&self) -> Option<&str> {
        match self {
            Error::Transport { url, .. } | Error::Status { url, .. } => Some(url),
            _ => None,
        }
    }

    /// The write report of an under-replicated write.
    pub fn report(&self) -> Option<&crate::WriteReport> {
        match self {
            Error::UnderReplicated(report) => Some(report),
            _ => None,
        }
    }
}

/// One node's failure inside a [`crate::WriteReport`].
#[derive(Debug)]
pub struct NodeFailure {
    /// The node's base URL.
    pub node: String,
    /// Why it failed.
    pub error: Error,
}

impl fmt::Display for NodeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.error)
    }
}
