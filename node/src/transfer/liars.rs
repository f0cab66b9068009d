//! Test doubles that lie (feature `test-liars` only): a node started with
//! a [`LiarMode`] turns some of its honest replies into the chosen lie, so
//! integration tests can show that a pull survives each kind of bad peer.

use shoal_protocol::chain::ChunkMap;
use shoal_protocol::wire::Message;

/// Ways a test double lies (feature `test-liars` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LiarMode {
    /// Flips a byte in every chunk it sends.
    FlipBytes,
    /// Serves a chunk map with one state changed.
    ForgeMap,
    /// Never answers a chunk request.
    Stall,
    /// Sends half a chunk frame, then closes the stream.
    Disconnect,
    /// Honest, but waits 50 ms before every chunk (a slow link).
    Slow,
    /// Honest for its first 8 chunks, then never answers again.
    StallMidway,
    /// Honest, but sends its chunk maps half a second after the fetcher's
    /// grace for them (a provider still hashing a blob it just received).
    SlowMap,
    /// Honest, but closes the stream of its first chunk-map request
    /// unanswered, as libp2p-stream drops a stream in a burst.
    DropFirstMapAsk,
}

pub(super) enum Lie {
    Send,
    Stall,
    Delay(std::time::Duration),
    Cut(Vec<u8>),
}

/// Turns an honest reply into the chosen lie.
/// `served` counts the replies of the kind of `reply` sent before it.
pub(super) fn lie(mode: LiarMode, reply: &mut Message, served: u32) -> Lie {
    match (mode, reply) {
        (LiarMode::FlipBytes, Message::Chunk { bytes, .. }) => {
            if let Some(b) = bytes.first_mut() {
                *b ^= 0xff;
            }
            Lie::Send
        }
        (LiarMode::ForgeMap, Message::Map { map, .. }) => {
            let mut encoded = map.encode();
            // The first state after the 13-byte header.
            if encoded.len() > 13 {
                encoded[13] ^= 0xff;
            }
            if let Ok(forged) = ChunkMap::decode(&encoded) {
                *map = forged;
            }
            Lie::Send
        }
        (LiarMode::Stall, Message::Chunk { .. }) => Lie::Stall,
        (LiarMode::StallMidway, Message::Chunk { .. }) if served >= 8 => Lie::Stall,
        (LiarMode::DropFirstMapAsk, Message::Map { .. }) if served == 0 => Lie::Cut(Vec::new()),
        (LiarMode::Slow, Message::Chunk { .. }) => Lie::Delay(std::time::Duration::from_millis(50)),
        (LiarMode::SlowMap, Message::Map { .. }) => {
            Lie::Delay(super::fetch::MAP_GRACE + std::time::Duration::from_millis(500))
        }
        (LiarMode::Disconnect, reply @ Message::Chunk { .. }) => {
            let frame = shoal_protocol::wire::encode_frame(reply);
            Lie::Cut(frame[..frame.len() / 2].to_vec())
        }
        _ => Lie::Send,
    }
}
