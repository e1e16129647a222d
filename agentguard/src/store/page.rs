//! Reading a large store a page at a time ([`PendingPage`], [`PageCursor`]) and following its changes without
//! re-reading it ([`ChangeBatch`]).

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::UnreadableRow;
use crate::request::{ApprovalRequest, RequestId};

/// The most requests one page holds: a bigger `limit` is read as this.
pub const MAX_PAGE: usize = 1000;

/// A position in the pending requests' order (oldest first: by creation time to the microsecond, then by id). A
/// page starts just after its cursor; a page's [`next`](PendingPage::next) is where the following page starts.
///
/// As text it is `MICROS_ID` (creation time in microseconds since the Unix epoch, `_`, the request id), e.g.
/// `1764513600123456_0b1c…`: what the API's `after=` and the CLI's `--after` take. Treat it as opaque; it stays
/// valid when the request it names is decided or forgotten, so paging never fails because the list moved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PageCursor {
    /// The creation time, in microseconds since the Unix epoch.
    pub created_us: u64,
    /// The request id (a row that cannot be read back is placed by its id as stored).
    pub id: String,
}

impl PageCursor {
    /// The cursor just at `request`: the page after it starts with the next one.
    pub fn at(request: &ApprovalRequest) -> Self {
        PageCursor {
            created_us: micros(request.timestamp()),
            id: request.request_id().as_str().to_owned(),
        }
    }

    /// Whether `request` comes after this cursor in the pending order.
    pub fn precedes(&self, request: &ApprovalRequest) -> bool {
        let created_us = micros(request.timestamp());
        (created_us, request.request_id().as_str()) > (self.created_us, self.id.as_str())
    }
}

/// Microseconds since the Unix epoch (0 before it): the pending order's time key.
pub(crate) fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros().min(u128::from(u64::MAX)) as u64)
}

impl fmt::Display for PageCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.created_us, self.id)
    }
}

/// A cursor that is not `MICROS_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadCursor(String);

impl fmt::Display for BadCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a page cursor: pass back the `next` value of the page before (MICROS_ID)",
            self.0
        )
    }
}

impl std::error::Error for BadCursor {}

impl FromStr for PageCursor {
    type Err = BadCursor;

    fn from_str(s: &str) -> Result<Self, BadCursor> {
        let bad = || BadCursor(s.chars().take(80).collect());
        let (created, id) = s.split_once('_').ok_or_else(bad)?;
        if id.is_empty() || created.is_empty() || !created.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        Ok(PageCursor {
            created_us: created.parse().map_err(|_| bad())?,
            id: id.to_owned(),
        })
    }
}

impl Serialize for PageCursor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PageCursor {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One page of [`ApprovalStore::pending_page`](super::ApprovalStore::pending_page): live requests oldest first, the
/// pending rows among them that cannot be read back, and where the next page starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PendingPage {
    /// The live requests of this page, oldest first.
    pub requests: Vec<ApprovalRequest>,
    /// Pending rows of this page that cannot be read back (each counts towards the limit).
    pub unreadable: Vec<UnreadableRow>,
    /// Where the next page starts; `None` when this page reached the end.
    pub next: Option<PageCursor>,
}

/// What changed in a store since a position of its change feed
/// ([`ApprovalStore::changes_since`](super::ApprovalStore::changes_since)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeBatch {
    /// The requests parked, voted on or decided since the position asked about, each once, in the order of their
    /// latest change. Read each one (`get`) to see what it is now.
    pub changed: Vec<RequestId>,
    /// The position to ask from next time.
    pub next: u64,
    /// `false` when the feed no longer holds every change since the position asked about (it keeps only the most
    /// recent ones): the reader must read the store again in full (a page), then follow from `next`.
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_text_round_trips_and_bad_text_says_what_to_pass() {
        let c = PageCursor {
            created_us: 1_764_513_600_123_456,
            id: "0b1c-42_x".into(),
        };
        assert_eq!(c.to_string(), "1764513600123456_0b1c-42_x");
        assert_eq!(c.to_string().parse::<PageCursor>().unwrap(), c);
        for bad in [
            "",
            "_",
            "12_",
            "_abc",
            "x1_abc",
            "12",
            "-1_abc",
            "99999999999999999999999_a",
        ] {
            let e = bad.parse::<PageCursor>().unwrap_err();
            assert!(e.to_string().contains("next"), "{bad}: {e}");
        }
    }

    #[test]
    fn order_is_time_then_id() {
        let a = PageCursor {
            created_us: 5,
            id: "b".into(),
        };
        let b = PageCursor {
            created_us: 5,
            id: "c".into(),
        };
        let c = PageCursor {
            created_us: 6,
            id: "a".into(),
        };
        assert!(a < b && b < c);
    }
}
