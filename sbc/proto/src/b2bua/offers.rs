//! What each side of a call last described to the relay, and what to give the relay back when
//! a re-offer is refused (`t38.rs`: RFC 3264 §8, the previous session description stays in
//! force).

use crate::{media::StreamDesc, net::Side};

/// The streams of a call's two sides as last given to the relay, and the state to restore
/// while a re-offer awaits its answer.
#[derive(Debug, Clone, Default)]
pub(super) struct Offers {
    /// Per side (`[inside, outside]`), the streams of its last offer or answer.
    described: [Vec<StreamDesc>; 2],
    /// The side with a re-offer in flight and its streams before it.
    pending: Option<(Side, Vec<StreamDesc>)>,
}

impl Offers {
    /// `side` described `streams` (an offer or answer the relay was given).
    pub(super) fn described(&mut self, side: Side, streams: &[StreamDesc]) {
        self.described[side.index()] = streams.to_vec();
    }

    /// `side` re-offers `streams`: what it had before is kept until the answer.
    pub(super) fn reoffer(&mut self, side: Side, streams: &[StreamDesc]) {
        let before = std::mem::replace(&mut self.described[side.index()], streams.to_vec());
        self.pending = Some((side, before));
    }

    /// The re-offer was answered (2xx with SDP, or the ACK's): nothing to fall back to.
    pub(super) fn answered(&mut self) {
        self.pending = None;
    }

    /// The re-offer of `offerer` was refused: the streams the relay must get back, if they
    /// differ from the refused offer's.
    pub(super) fn refused(&mut self, offerer: Side) -> Option<Vec<StreamDesc>> {
        match self.pending.take() {
            Some((side, before)) if side == offerer => {
                let changed = self.described[side.index()] != before;
                self.described[side.index()].clone_from(&before);
                changed.then_some(before)
            }
            other => {
                self.pending = other;
                None
            }
        }
    }
}
