//! `proxylab lab stop COMPONENT` and `proxylab lab start COMPONENT`: failure drills on a running
//! lab, from another terminal.
//!
//! The command finds the lab through its state directory (`lab.json` names the lab's admin
//! endpoint) and asks that endpoint (`POST /components/{name}/stop|start`, see [`super::admin`]);
//! the lab process does the work, so nothing here needs to know how a component stops. The answer
//! is the endpoint's: a 404 lists the components there are, a 409 says why the action was refused
//! (already stopped, address taken, …).

use std::net::SocketAddr;
use std::path::Path;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `stop` or `start`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Stop,
    Start,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
        }
    }
}

/// Why the drill did not happen.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No lab holds the state dir, or it is not ready yet (exit 3, as `lab status`).
    #[error("{0}")]
    NoLab(String),
    /// The lab refused (unknown component, already stopped, …) or could not be reached.
    #[error("{0}")]
    Failed(String),
}

/// Stops or starts `component` of the lab in `state_dir`; returns the lab's one-line answer.
pub async fn run(
    state_dir: &Path,
    component: &str,
    action: Action,
) -> Result<String, ControlError> {
    let admin = admin_address(state_dir)?;
    // The name goes into a URL path: refuse anything that is not a plain component name.
    if component.is_empty()
        || !component
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(ControlError::Failed(format!(
            "invalid component name {component:?}"
        )));
    }
    let path = format!("/components/{component}/{}", action.as_str());
    let (status, body) = post(admin, &path)
        .await
        .map_err(|e| ControlError::Failed(format!("lab admin endpoint {admin}: {e}")))?;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    if status == 200 {
        let running = v["running"].as_bool().unwrap_or(action == Action::Start);
        Ok(format!(
            "{component} {}",
            if running { "running" } else { "stopped" }
        ))
    } else {
        Err(ControlError::Failed(
            v["message"]
                .as_str()
                .map(str::to_owned)
                .unwrap_or_else(|| format!("HTTP {status}: {body}")),
        ))
    }
}

/// The running lab's admin endpoint, from its `lab.json`.
fn admin_address(state_dir: &Path) -> Result<SocketAddr, ControlError> {
    let status =
        super::state::status(state_dir).map_err(|e| ControlError::Failed(format!("{e:#}")))?;
    let info = match status {
        super::state::Status::Running { info: Some(i), .. } => i,
        super::state::Status::Running { info: None, .. } => {
            return Err(ControlError::NoLab(format!(
                "the lab in {} is still starting; try again when it is ready",
                state_dir.display()
            )));
        }
        super::state::Status::Stopped { .. } => {
            return Err(ControlError::NoLab(format!(
                "no lab is running in {} (start one with `proxylab lab up --state-dir {}`)",
                state_dir.display(),
                state_dir.display()
            )));
        }
    };
    info["admin"]["lab"]
        .as_str()
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|u| u.trim_end_matches('/').parse::<SocketAddr>().ok())
        .filter(|a| a.ip().is_loopback())
        .ok_or_else(|| {
            ControlError::Failed(format!(
                "{}: admin.lab is not a loopback http:// address",
                state_dir.join("lab.json").display()
            ))
        })
}

/// One HTTP/1.1 POST without a body; the status code and the body.
async fn post(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))?;
    Ok((status, body.to_owned()))
}
