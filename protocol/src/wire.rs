//! Frames of the peer-to-peer transfer protocol (`/shoal/transfer/1`).
//!
//! Pure encoding: a frame is `length: u32 BE` (of what follows), `kind: u8`,
//! then the body. [`decode_frame`] works on a byte buffer and returns
//! `Ok(None)` while the frame is incomplete, so the I/O side can read more
//! without this module knowing about sockets. Every length is checked
//! against a hard limit *before* anything is allocated, so a peer cannot make
//! a node buffer more than [`MAX_FRAME_LEN`] bytes per frame.
//!
//! Digests travel as multihash bytes (the DHT key form); a frame whose
//! multihash is not sha2-256/sha2-512 is malformed.

use multihash::Multihash;

use crate::chain::{ChainPrefix, ChunkMap, PrefixTail};
use crate::chunk::MAX_CHUNK_SIZE;
use crate::digest::Digest;
use crate::share::SplitShare;

/// Version in the protocol name; bumped on any incompatible change.
pub const PROTOCOL_NAME: &str = "/shoal/transfer/1";
/// Largest frame body: a chunk of the largest size plus its header.
pub const MAX_FRAME_LEN: usize = MAX_CHUNK_SIZE as usize + 1024;
/// Largest chunk-presence bitmap (one bit per chunk).
pub const MAX_BITMAP_LEN: usize = crate::chunk::MAX_CHUNKS as usize / 8;

/// A request or response on a transfer stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Size and chunk size of a blob, and whether the peer holds all of it.
    GetInfo {
        digest: Digest,
    },
    Info {
        digest: Digest,
        size: u64,
        chunk_size: u32,
        complete: bool,
    },
    /// The blob's chunk map (see `chain.rs`).
    GetMap {
        digest: Digest,
    },
    Map {
        digest: Digest,
        map: ChunkMap,
    },
    /// One chunk's bytes.
    GetChunk {
        digest: Digest,
        index: u32,
    },
    Chunk {
        digest: Digest,
        index: u32,
        bytes: Vec<u8>,
    },
    /// Which chunks of a (possibly incomplete) blob the peer holds verified.
    GetHave {
        digest: Digest,
    },
    Have {
        digest: Digest,
        bitmap: Vec<u8>,
    },
    /// The peer does not have what was asked.
    NotFound {
        digest: Digest,
    },
    /// The peer refuses: busy, rate-limited, or the request was malformed.
    Refused {
        reason: String,
    },
    /// Which manifest digest a tag named at its upstream when the peer last
    /// resolved it (`name` is `<host>/<repo>:<tag>`). A claim, not a fact:
    /// used only when the upstream cannot say (see `docs/security.md`).
    GetTag {
        name: String,
    },
    TagIs {
        name: String,
        digest: Digest,
        /// Seconds since the peer resolved it.
        age_secs: u64,
    },
    /// The states a peer knows of a blob it is still hashing in order
    /// (fetching from upstream): a [`ChainPrefix`]. A peer that holds the
    /// whole blob answers with every state.
    GetPrefix {
        digest: Digest,
    },
    Prefix {
        digest: Digest,
        prefix: ChainPrefix,
    },
    /// A peer's share of a blob that several nodes fetch from upstream in
    /// disjoint ranges (a split fetch): what it holds, which ranges it
    /// fetches, and the hash of each chunk of them it has fetched.
    GetShare {
        digest: Digest,
    },
    Share {
        digest: Digest,
        share: SplitShare,
    },
    /// Like `GetChunk`, but for a chunk the peer may not hold yet: it
    /// answers with the chunk as soon as it holds it, or `NotFound` after
    /// `wait_ms` (at most [`MAX_CHUNK_WAIT_MS`]). A follower relaying a
    /// blob down a chain of followers asks its predecessor this way, so a
    /// chunk moves on the moment it is checked instead of at the next poll.
    WaitChunk {
        digest: Digest,
        index: u32,
        wait_ms: u32,
    },
    /// `GetPrefix` for the states from `from` on: a follower that knows
    /// the first `from` states polls its leader this way, so each answer
    /// carries the few new states instead of all of them.
    GetPrefixFrom {
        digest: Digest,
        from: u32,
    },
    PrefixTail {
        digest: Digest,
        tail: PrefixTail,
    },
}

/// Longest a `WaitChunk` is held by the peer asked.
pub const MAX_CHUNK_WAIT_MS: u32 = 5_000;

/// Longest tag name in `GetTag`/`TagIs`: a host, a repository name (255)
/// and a tag (128), with room to spare.
pub const MAX_TAG_NAME: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLong(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

const GET_INFO: u8 = 1;
const INFO: u8 = 2;
const GET_MAP: u8 = 3;
const MAP: u8 = 4;
const GET_CHUNK: u8 = 5;
const CHUNK: u8 = 6;
const GET_HAVE: u8 = 7;
const HAVE: u8 = 8;
const NOT_FOUND: u8 = 9;
const REFUSED: u8 = 10;
const GET_TAG: u8 = 11;
const TAG_IS: u8 = 12;
const GET_PREFIX: u8 = 13;
const PREFIX: u8 = 14;
const GET_SHARE: u8 = 15;
const SHARE: u8 = 16;
const WAIT_CHUNK: u8 = 17;
const GET_PREFIX_FROM: u8 = 18;
const PREFIX_TAIL: u8 = 19;

/// Longest `Refused` reason kept (longer ones are cut on encode).
const MAX_REASON: usize = 256;

fn put_digest(out: &mut Vec<u8>, d: &Digest) {
    let mh = d.multihash_bytes();
    out.push(mh.len() as u8);
    out.extend_from_slice(&mh);
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Encodes a message as one frame (length prefix included).
pub fn encode_frame(msg: &Message) -> Vec<u8> {
    // The body is written straight after a placeholder header, filled in
    // at the end: a chunk's bytes are copied once, into a frame allocated
    // once at its final size.
    let payload = match msg {
        Message::Chunk { bytes, .. } => bytes.len(),
        _ => 0,
    };
    let mut frame = Vec::with_capacity(FRAME_OVERHEAD + payload);
    frame.extend_from_slice(&[0; 5]);
    let kind = match msg {
        Message::GetInfo { digest } => {
            put_digest(&mut frame, digest);
            GET_INFO
        }
        Message::Info {
            digest,
            size,
            chunk_size,
            complete,
        } => {
            put_digest(&mut frame, digest);
            frame.extend_from_slice(&size.to_be_bytes());
            frame.extend_from_slice(&chunk_size.to_be_bytes());
            frame.push(u8::from(*complete));
            INFO
        }
        Message::GetMap { digest } => {
            put_digest(&mut frame, digest);
            GET_MAP
        }
        Message::Map { digest, map } => {
            put_digest(&mut frame, digest);
            put_bytes(&mut frame, &map.encode());
            MAP
        }
        Message::GetChunk { digest, index } => {
            put_digest(&mut frame, digest);
            frame.extend_from_slice(&index.to_be_bytes());
            GET_CHUNK
        }
        Message::Chunk {
            digest,
            index,
            bytes,
        } => {
            put_digest(&mut frame, digest);
            frame.extend_from_slice(&index.to_be_bytes());
            put_bytes(&mut frame, bytes);
            CHUNK
        }
        Message::GetHave { digest } => {
            put_digest(&mut frame, digest);
            GET_HAVE
        }
        Message::Have { digest, bitmap } => {
            put_digest(&mut frame, digest);
            put_bytes(&mut frame, bitmap);
            HAVE
        }
        Message::NotFound { digest } => {
            put_digest(&mut frame, digest);
            NOT_FOUND
        }
        Message::Refused { reason } => {
            let cut: String = reason.chars().take(MAX_REASON).collect();
            put_bytes(&mut frame, cut.as_bytes());
            REFUSED
        }
        Message::GetTag { name } => {
            put_bytes(&mut frame, cut_name(name));
            GET_TAG
        }
        Message::TagIs {
            name,
            digest,
            age_secs,
        } => {
            put_bytes(&mut frame, cut_name(name));
            put_digest(&mut frame, digest);
            frame.extend_from_slice(&age_secs.to_be_bytes());
            TAG_IS
        }
        Message::GetPrefix { digest } => {
            put_digest(&mut frame, digest);
            GET_PREFIX
        }
        Message::Prefix { digest, prefix } => {
            put_digest(&mut frame, digest);
            put_bytes(&mut frame, &prefix.encode());
            PREFIX
        }
        Message::GetShare { digest } => {
            put_digest(&mut frame, digest);
            GET_SHARE
        }
        Message::Share { digest, share } => {
            put_digest(&mut frame, digest);
            share.encode(&mut frame);
            SHARE
        }
        Message::WaitChunk {
            digest,
            index,
            wait_ms,
        } => {
            put_digest(&mut frame, digest);
            frame.extend_from_slice(&index.to_be_bytes());
            frame.extend_from_slice(&wait_ms.to_be_bytes());
            WAIT_CHUNK
        }
        Message::GetPrefixFrom { digest, from } => {
            put_digest(&mut frame, digest);
            frame.extend_from_slice(&from.to_be_bytes());
            GET_PREFIX_FROM
        }
        Message::PrefixTail { digest, tail } => {
            put_digest(&mut frame, digest);
            put_bytes(&mut frame, &tail.encode());
            PREFIX_TAIL
        }
    };
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    frame[4] = kind;
    frame
}

/// Room for everything in a frame but a chunk's bytes: the header, a digest
/// (a multihash of at most 64 bytes and its length) and the fixed fields.
const FRAME_OVERHEAD: usize = 5 + 1 + 2 + 64 + 4 + 4 + 4;

/// A tag name as sent: at most [`MAX_TAG_NAME`] bytes (longer names are
/// never valid, so a cut one simply matches nothing).
fn cut_name(name: &str) -> &[u8] {
    let b = name.as_bytes();
    &b[..b.len().min(MAX_TAG_NAME)]
}

/// A cursor over a frame body that never reads past its end.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (head, rest) = self
            .0
            .split_at_checked(n)
            .ok_or(WireError::Malformed("truncated"))?;
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, WireError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn digest(&mut self) -> Result<Digest, WireError> {
        let len = self.u8()? as usize;
        let mh = Multihash::<64>::from_bytes(self.take(len)?)
            .map_err(|_| WireError::Malformed("bad multihash"))?;
        Digest::from_multihash(&mh).map_err(|_| WireError::Malformed("unsupported multihash"))
    }
    fn bytes(&mut self, limit: usize) -> Result<&'a [u8], WireError> {
        let len = self.u32()? as usize;
        if len > limit {
            return Err(WireError::Malformed("field longer than its limit"));
        }
        self.take(len)
    }
    fn end(&self) -> Result<(), WireError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(WireError::Malformed("trailing bytes"))
        }
    }
}

fn tag_name(bytes: &[u8]) -> Result<String, WireError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| WireError::Malformed("tag name is not UTF-8"))
}

/// The length field of the frame at the front of `buf` (kind and body,
/// not checked against [`MAX_FRAME_LEN`]), once its four bytes are in.
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    let b = buf.get(..4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

/// Decodes one frame from the front of `buf`: `Ok(None)` if more bytes are
/// needed, else the message and how many bytes it used.
pub fn decode_frame(buf: &[u8]) -> Result<Option<(Message, usize)>, WireError> {
    let Some(len) = frame_len(buf) else {
        return Ok(None);
    };
    if len > MAX_FRAME_LEN {
        return Err(WireError::FrameTooLong(len));
    }
    if len == 0 {
        return Err(WireError::Malformed("empty frame"));
    }
    let Some(frame) = buf.get(4..4 + len) else {
        return Ok(None);
    };
    let mut r = Reader(&frame[1..]);
    let msg = match frame[0] {
        GET_INFO => Message::GetInfo {
            digest: r.digest()?,
        },
        INFO => Message::Info {
            digest: r.digest()?,
            size: r.u64()?,
            chunk_size: r.u32()?,
            complete: match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(WireError::Malformed("bad flag")),
            },
        },
        GET_MAP => Message::GetMap {
            digest: r.digest()?,
        },
        MAP => {
            let digest = r.digest()?;
            let map = ChunkMap::decode(r.bytes(ChunkMap::MAX_ENCODED_LEN)?)
                .map_err(|_| WireError::Malformed("bad chunk map"))?;
            Message::Map { digest, map }
        }
        GET_CHUNK => Message::GetChunk {
            digest: r.digest()?,
            index: r.u32()?,
        },
        CHUNK => Message::Chunk {
            digest: r.digest()?,
            index: r.u32()?,
            bytes: r.bytes(MAX_CHUNK_SIZE as usize)?.to_vec(),
        },
        GET_HAVE => Message::GetHave {
            digest: r.digest()?,
        },
        HAVE => Message::Have {
            digest: r.digest()?,
            bitmap: r.bytes(MAX_BITMAP_LEN)?.to_vec(),
        },
        NOT_FOUND => Message::NotFound {
            digest: r.digest()?,
        },
        REFUSED => Message::Refused {
            reason: String::from_utf8_lossy(r.bytes(MAX_REASON * 4)?).into_owned(),
        },
        GET_TAG => Message::GetTag {
            name: tag_name(r.bytes(MAX_TAG_NAME)?)?,
        },
        TAG_IS => Message::TagIs {
            name: tag_name(r.bytes(MAX_TAG_NAME)?)?,
            digest: r.digest()?,
            age_secs: r.u64()?,
        },
        GET_PREFIX => Message::GetPrefix {
            digest: r.digest()?,
        },
        PREFIX => {
            let digest = r.digest()?;
            let prefix = ChainPrefix::decode(r.bytes(ChunkMap::MAX_ENCODED_LEN)?)
                .map_err(|_| WireError::Malformed("bad chain prefix"))?;
            Message::Prefix { digest, prefix }
        }
        GET_SHARE => Message::GetShare {
            digest: r.digest()?,
        },
        SHARE => {
            let digest = r.digest()?;
            let (share, used) =
                SplitShare::decode(r.0).map_err(|_| WireError::Malformed("bad split share"))?;
            r.take(used)?;
            Message::Share { digest, share }
        }
        WAIT_CHUNK => Message::WaitChunk {
            digest: r.digest()?,
            index: r.u32()?,
            wait_ms: r.u32()?,
        },
        GET_PREFIX_FROM => Message::GetPrefixFrom {
            digest: r.digest()?,
            from: r.u32()?,
        },
        PREFIX_TAIL => {
            let digest = r.digest()?;
            let tail = PrefixTail::decode(r.bytes(4 + ChunkMap::MAX_ENCODED_LEN)?)
                .map_err(|_| WireError::Malformed("bad prefix tail"))?;
            Message::PrefixTail { digest, tail }
        }
        other => return Err(WireError::UnknownKind(other)),
    };
    r.end()?;
    Ok(Some((msg, 4 + len)))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::chain::ChunkMapBuilder;
    use crate::chunk::ChunkPlan;
    use crate::digest::Algorithm;

    fn samples() -> Vec<Message> {
        let d = Digest::sha256_of(b"blob");
        let data = vec![7u8; 40_000];
        let plan = ChunkPlan::new(data.len() as u64, 16 * 1024).expect("plan");
        let mut b = ChunkMapBuilder::new(Algorithm::Sha256, plan);
        b.update(&data[..20_000]);
        let prefix = b.prefix();
        b.update(&data[20_000..]);
        let (map, _) = b.finish().expect("map");
        let tail = map.to_prefix().tail(1);
        vec![
            Message::GetInfo { digest: d.clone() },
            Message::Info {
                digest: d.clone(),
                size: 40_000,
                chunk_size: 16 * 1024,
                complete: true,
            },
            Message::GetMap { digest: d.clone() },
            Message::Map {
                digest: d.clone(),
                map,
            },
            Message::GetChunk {
                digest: d.clone(),
                index: 2,
            },
            Message::Chunk {
                digest: d.clone(),
                index: 2,
                bytes: vec![1, 2, 3],
            },
            Message::GetHave {
                digest: Digest::compute(Algorithm::Sha512, b"x"),
            },
            Message::Have {
                digest: d.clone(),
                bitmap: vec![0b101],
            },
            Message::NotFound { digest: d },
            Message::Refused {
                reason: "busy".into(),
            },
            Message::GetTag {
                name: "registry.example/app:v1".into(),
            },
            Message::TagIs {
                name: "registry.example/app:v1".into(),
                digest: Digest::sha256_of(b"manifest"),
                age_secs: 42,
            },
            Message::GetPrefix {
                digest: Digest::sha256_of(b"prefix"),
            },
            Message::Prefix {
                digest: Digest::sha256_of(b"partial"),
                prefix,
            },
            Message::GetShare {
                digest: Digest::sha256_of(b"split"),
            },
            Message::Share {
                digest: Digest::sha256_of(b"split"),
                share: {
                    let mut share = crate::share::SplitShare::new(plan);
                    share.own(1..3);
                    share.vouch(2, crate::share::chunk_hash(b"chunk"));
                    share.have[2] = true;
                    share
                },
            },
            Message::WaitChunk {
                digest: Digest::sha256_of(b"relayed"),
                index: 7,
                wait_ms: 1_000,
            },
            Message::GetPrefixFrom {
                digest: Digest::sha256_of(b"partial"),
                from: 3,
            },
            Message::PrefixTail {
                digest: Digest::sha256_of(b"partial"),
                tail: tail.clone(),
            },
        ]
    }

    #[test]
    fn every_message_round_trips_and_short_input_is_incomplete() {
        for msg in samples() {
            let frame = encode_frame(&msg);
            assert_eq!(decode_frame(&frame), Ok(Some((msg.clone(), frame.len()))));
            for cut in 0..frame.len() {
                assert_eq!(
                    decode_frame(&frame[..cut]),
                    Ok(None),
                    "{msg:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn limits_are_enforced_before_allocation() {
        let huge = ((MAX_FRAME_LEN + 1) as u32).to_be_bytes();
        assert_eq!(
            decode_frame(&huge),
            Err(WireError::FrameTooLong(MAX_FRAME_LEN + 1))
        );
        let mut frame = encode_frame(&Message::GetInfo {
            digest: Digest::sha256_of(b""),
        });
        frame[4] = 99;
        assert_eq!(decode_frame(&frame), Err(WireError::UnknownKind(99)));
        let mut trailing = encode_frame(&Message::GetInfo {
            digest: Digest::sha256_of(b""),
        });
        trailing.push(0);
        let len = u32::from_be_bytes([trailing[0], trailing[1], trailing[2], trailing[3]]) + 1;
        trailing[..4].copy_from_slice(&len.to_be_bytes());
        assert!(decode_frame(&trailing).is_err());
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_frame(&bytes);
        }

        #[test]
        fn corrupted_frames_never_panic(idx in 0usize..16, at in any::<prop::sample::Index>(), flip in any::<u8>()) {
            let msg = samples().swap_remove(idx);
            let mut frame = encode_frame(&msg);
            let i = at.index(frame.len());
            frame[i] ^= flip;
            let _ = decode_frame(&frame);
        }
    }
}
