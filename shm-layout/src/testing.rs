//! Test support: a seeded generator and edge values.

/// xorshift64*: deterministic, seeded per test.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Words at the edges of every field of a 64-bit word.
pub fn edge_u64() -> std::vec::Vec<u64> {
    let mut v = std::vec![0, u64::MAX, u64::MAX >> 1, 1 << 63];
    for b in 0..64 {
        v.push(1 << b);
        v.push(!(1 << b));
        v.push((1u64 << b).wrapping_sub(1));
    }
    v
}
