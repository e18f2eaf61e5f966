//! The slot-ownership decision: may this node serve a command whose keys
//! hash to these slots, or must the client go elsewhere?
//!
//! This is a pure function of (slot states, request) so it can be tested
//! per command. In standalone mode (`ClusterView::Standalone`) every
//! request is served; the cluster issue fills in the other states without
//! touching dispatch.

/// Why a request is not served here (or that it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Serve,
    /// `-MOVED slot host:port`
    Moved {
        slot: u16,
        addr: String,
    },
    /// `-ASK slot host:port`
    Ask {
        slot: u16,
        addr: String,
    },
    /// `-CROSSSLOT Keys in request don't hash to the same slot`
    CrossSlot,
    /// `-TRYAGAIN Multiple keys request during rehashing of slot`
    TryAgain,
    /// `-CLUSTERDOWN Hash slot not served`
    ClusterDownUnbound,
}

impl Decision {
    /// The error line Redis sends for this decision (without `-` and CRLF).
    pub fn error(&self) -> Option<String> {
        match self {
            Decision::Serve => None,
            Decision::Moved { slot, addr } => Some(format!("MOVED {slot} {addr}")),
            Decision::Ask { slot, addr } => Some(format!("ASK {slot} {addr}")),
            Decision::CrossSlot => Some("CROSSSLOT Keys in request don't hash to the same slot".into()),
            Decision::TryAgain => Some("TRYAGAIN Multiple keys request during rehashing of slot".into()),
            Decision::ClusterDownUnbound => Some("CLUSTERDOWN Hash slot not served".into()),
        }
    }
}

/// What this node knows about slot ownership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterView {
    /// Not a cluster node: every slot is local.
    Standalone,
}

/// Decide for a request whose keys hash to `slots` (in key order).
pub fn decide(view: ClusterView, slots: &[u16]) -> Decision {
    match view {
        ClusterView::Standalone => {
            let _ = slots;
            Decision::Serve
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_serves_everything() {
        assert_eq!(decide(ClusterView::Standalone, &[]), Decision::Serve);
        assert_eq!(decide(ClusterView::Standalone, &[1, 2, 16383]), Decision::Serve);
        assert_eq!(Decision::Serve.error(), None);
        assert_eq!(
            Decision::Moved { slot: 3999, addr: "127.0.0.1:6381".into() }.error().unwrap(),
            "MOVED 3999 127.0.0.1:6381"
        );
    }
}
