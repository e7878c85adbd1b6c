//! The seeded generator of every random choice in the tests.

/// splitmix64's finaliser.
pub fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A small deterministic generator (splitmix64): the same seed gives the
/// same sequence.
pub type Rng = SaltedRng<0>;

/// [`Rng`] whose sequences are a suite's own: a suite names its generator
/// once (`type Rng = support::SaltedRng<0x5eed>`), so that its seeds keep
/// replaying the sequences they always did.
pub struct SaltedRng<const SALT: u64>(u64);

impl<const SALT: u64> SaltedRng<SALT> {
    pub fn new(seed: u64) -> Self {
        SaltedRng(splitmix(seed ^ SALT))
    }
    pub fn next(&mut self) -> u64 {
        self.0 = splitmix(self.0);
        self.0
    }
    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Uniform in lo..=hi.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability p/100.
    pub fn pct(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
    /// One of `v`, uniformly.
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}
