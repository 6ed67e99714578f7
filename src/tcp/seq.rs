//! TCP sequence numbers: 32-bit values compared in modular arithmetic
//! (RFC 9293 section 3.4, "Sequence Numbers").
//!
//! `a < b` means "a comes before b", which holds when `b - a`, taken modulo
//! 2^32, is in `1..2^31`. The order is only meaningful for numbers less than
//! 2^31 apart, which the window sizes of RFC 7323 (at most 2^30) guarantee for
//! every pair the engine compares.

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub, SubAssign};

/// A TCP sequence number.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Seq(pub u32);

impl Seq {
    /// The signed distance from `other` to `self`: positive if `self` comes
    /// after `other`.
    #[inline]
    pub const fn distance(self, other: Seq) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// The later of two sequence numbers.
    #[inline]
    pub fn max(self, other: Seq) -> Seq {
        if self.distance(other) >= 0 {
            self
        } else {
            other
        }
    }

    /// The earlier of two sequence numbers.
    #[inline]
    pub fn min(self, other: Seq) -> Seq {
        if self.distance(other) <= 0 {
            self
        } else {
            other
        }
    }

    /// Whether `start <= self < end`.
    #[inline]
    pub fn in_range(self, start: Seq, end: Seq) -> bool {
        start <= self && self < end
    }
}

impl fmt::Debug for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Seq({})", self.0)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Add<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn add(self, n: u32) -> Seq {
        Seq(self.0.wrapping_add(n))
    }
}

impl AddAssign<u32> for Seq {
    #[inline]
    fn add_assign(&mut self, n: u32) {
        self.0 = self.0.wrapping_add(n);
    }
}

impl Sub<u32> for Seq {
    type Output = Seq;
    #[inline]
    fn sub(self, n: u32) -> Seq {
        Seq(self.0.wrapping_sub(n))
    }
}

impl SubAssign<u32> for Seq {
    #[inline]
    fn sub_assign(&mut self, n: u32) {
        self.0 = self.0.wrapping_sub(n);
    }
}

/// `a - b` as a byte count. The caller must know that `a` is not before `b`:
/// a negative distance is a bug, and panics in debug builds.
impl Sub<Seq> for Seq {
    type Output = u32;
    #[inline]
    fn sub(self, other: Seq) -> u32 {
        let distance = self.distance(other);
        debug_assert!(distance >= 0, "{self:?} - {other:?} is negative");
        distance as u32
    }
}

impl PartialOrd for Seq {
    #[inline]
    fn partial_cmp(&self, other: &Seq) -> Option<Ordering> {
        Some(self.distance(*other).cmp(&0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn order_across_wraparound() {
        let before = Seq(u32::MAX - 10);
        let after = before + 20;
        assert_eq!(after, Seq(9));
        assert!(before < after);
        assert!(after > before);
        assert_eq!(after - before, 20);
        assert_eq!(before.max(after), after);
        assert_eq!(before.min(after), before);
        assert!(Seq(u32::MAX).in_range(before, after));
        assert!(!after.in_range(before, after));
    }

    proptest! {
        #[test]
        fn add_then_subtract_is_identity(a: u32, n in 0u32..(1 << 31)) {
            let a = Seq(a);
            prop_assert_eq!((a + n) - a, n);
            prop_assert_eq!((a + n) - n, a);
            if n > 0 {
                prop_assert!(a < a + n);
                prop_assert!(a + n > a);
            } else {
                prop_assert!(a == a + n);
            }
        }

        #[test]
        fn comparisons_agree_with_u64_when_close(a: u32, n in 1u32..(1 << 30), m in 1u32..(1 << 30)) {
            // a, a+n, a+n+m: strictly increasing as long as the span is below 2^31.
            let (x, y, z) = (Seq(a), Seq(a) + n, Seq(a) + n + m);
            prop_assert!(x < y && y < z && x < z);
            prop_assert_eq!(x.max(z), z);
            prop_assert!(y.in_range(x, z));
        }
    }
}
