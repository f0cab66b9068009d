//! The wire form of chunk presence (`Have`): one bit per chunk, most
//! significant bit first.

/// Packs one flag per chunk into bits.
pub fn encode(flags: impl ExactSizeIterator<Item = bool>) -> Vec<u8> {
    let mut out = vec![0u8; flags.len().div_ceil(8)];
    for (i, on) in flags.enumerate() {
        if on {
            out[i / 8] |= 0x80 >> (i % 8);
        }
    }
    out
}

/// One flag per chunk of `count`; bits past the end (or missing) are off.
pub fn decode(bitmap: &[u8], count: usize) -> Vec<bool> {
    (0..count)
        .map(|i| {
            bitmap
                .get(i / 8)
                .is_some_and(|b| b & (0x80 >> (i % 8)) != 0)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let flags = [true, false, true, true, false, false, false, false, true];
        let bits = super::encode(flags.iter().copied());
        assert_eq!(bits, vec![0b1011_0000, 0b1000_0000]);
        assert_eq!(super::decode(&bits, flags.len()), flags);
        assert_eq!(super::decode(&[], 3), vec![false; 3]);
    }
}
