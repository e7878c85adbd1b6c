//! STUB
pub struct SetView;
pub enum SlowOutcome {}
pub mod heap {
    pub struct HeapSet;
}
