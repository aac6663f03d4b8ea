//! Coalescing a profile's points into as few block reads as possible. Pure.
//!
//! Invariants of [`plan`]: every point with a register is served by exactly one block;
//! a block never exceeds what one request may read ([`Table::max_per_read`]) unless one
//! point alone is larger, which a valid profile never has; blocks of one table never
//! overlap, except when points themselves overlap (aliases of the same registers) and
//! together would exceed the limit; blocks come ordered by table then start address, so
//! the same profile always gives the same requests.

use crate::profile::convert::span;
use crate::profile::{PointDef, Table};

/// Unused registers we accept to read inside one block rather than issue another request.
pub const DEFAULT_MAX_GAP: u16 = 8;
/// Bit tables pack 16 bits in the space of one register, so their gap scales by 16.
pub const BITS_PER_REGISTER: u32 = 16;

/// One read request and the points it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub table: Table,
    pub start: u16,
    pub count: u16,
    /// (index into the profile's points, offset of the point's first register/bit in the block)
    pub points: Vec<(usize, u16)>,
}

/// Groups the points that have a register into block reads, table by table: sorted by
/// address, a point joins the current block when the unused gap before it is at most
/// `max_gap` registers (`max_gap * 16` bits for coils and discrete inputs) and the block
/// stays within the protocol's size limit. Points may share registers (bits of a status
/// word). Points without a register (serial, LoRa) are ignored.
pub fn plan(points: &[PointDef], max_gap: u16) -> Vec<Block> {
    // (table, start, end exclusive, index); u32 so a bad address cannot overflow.
    let mut items: Vec<(Table, u32, u32, usize)> = points
        .iter()
        .enumerate()
        .filter_map(|(i, p)| {
            let reg = p.reg.as_ref()?;
            let start = u32::from(reg.address);
            Some((reg.table, start, start + u32::from(span(reg, p.ty)), i))
        })
        .collect();
    items.sort_by_key(|&(table, start, end, i)| (table, start, end, i));

    let mut blocks = Vec::new();
    let mut current: Option<Open> = None;
    for (table, start, end, i) in items {
        let limit = u32::from(table.max_per_read());
        let gap = if table.is_bits() {
            u32::from(max_gap) * BITS_PER_REGISTER
        } else {
            u32::from(max_gap)
        };
        if let Some(open) = current.as_mut() {
            let new_end = open.end.max(end);
            if open.table == table && start <= open.end + gap && new_end - open.start <= limit {
                open.end = new_end;
                open.members.push((i, start));
                continue;
            }
        }
        blocks.extend(current.take().map(Open::finish));
        current = Some(Open {
            table,
            start,
            end,
            members: vec![(i, start)],
        });
    }
    blocks.extend(current.take().map(Open::finish));
    blocks
}

/// The block being grown, in u32 so a bad address cannot overflow.
struct Open {
    table: Table,
    start: u32,
    /// Exclusive.
    end: u32,
    /// (point index, absolute address)
    members: Vec<(usize, u32)>,
}

impl Open {
    fn finish(self) -> Block {
        let clamp = |x: u32| u16::try_from(x).unwrap_or(u16::MAX);
        Block {
            table: self.table,
            start: clamp(self.start),
            count: clamp(self.end - self.start),
            points: self
                .members
                .into_iter()
                .map(|(i, s)| (i, clamp(s - self.start)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Proves that the plan merges neighbours within the gap, splits on distance, table
    //! and size limits, lets bits share a status word, and (property) covers every point
    //! exactly once with non-overlapping blocks within the protocol limits.
    use super::*;
    use crate::profile::{PointType, RegisterRef, WordOrder};
    use proptest::prelude::*;

    fn pt(table: Table, address: u16, ty: PointType) -> PointDef {
        let reg = RegisterRef {
            table,
            address,
            order: WordOrder::Abcd,
            bit: None,
            length: (ty == PointType::String).then_some(8),
        };
        PointDef::plain(
            format!("x_{}_{address}", table.as_str()),
            None,
            ty,
            Some(reg),
        )
    }

    #[test]
    fn neighbours_within_the_gap_share_one_read() {
        let points = [
            pt(Table::Input, 0, PointType::U16),
            pt(Table::Input, 1, PointType::U32),
            pt(Table::Input, 11, PointType::U16),
        ];
        let blocks = plan(&points, DEFAULT_MAX_GAP);
        assert_eq!(
            blocks,
            vec![Block {
                table: Table::Input,
                start: 0,
                count: 12,
                points: vec![(0, 0), (1, 1), (2, 11)],
            }]
        );
    }

    #[test]
    fn a_gap_wider_than_allowed_starts_a_new_read() {
        let points = [
            pt(Table::Input, 20, PointType::String),
            pt(Table::Input, 0, PointType::U16),
        ];
        let blocks = plan(&points, 8);
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[0].start, blocks[0].count), (0, 1));
        assert_eq!(
            (blocks[1].start, blocks[1].count, blocks[1].points.clone()),
            (20, 8, vec![(0, 0)])
        );
    }

    #[test]
    fn tables_never_mix_and_come_in_table_order() {
        let points = [
            pt(Table::Holding, 0, PointType::U16),
            pt(Table::Coil, 0, PointType::Bool),
            pt(Table::Input, 0, PointType::U16),
            pt(Table::Discrete, 0, PointType::Bool),
        ];
        let tables: Vec<Table> = plan(&points, 8).iter().map(|b| b.table).collect();
        assert_eq!(
            tables,
            [Table::Coil, Table::Discrete, Table::Input, Table::Holding]
        );
    }

    #[test]
    fn bits_of_one_status_word_share_its_register() {
        let mut a = pt(Table::Input, 11, PointType::Bool);
        let mut b = a.clone();
        if let Some(r) = a.reg.as_mut() {
            r.bit = Some(0);
        }
        if let Some(r) = b.reg.as_mut() {
            r.bit = Some(1);
        }
        let blocks = plan(&[a, b], 0);
        assert_eq!(blocks.len(), 1);
        assert_eq!((blocks[0].start, blocks[0].count), (11, 1));
        assert_eq!(blocks[0].points, vec![(0, 0), (1, 0)]);
    }

    #[test]
    fn blocks_are_split_at_the_protocol_size_limit() {
        let points: Vec<PointDef> = (0..130)
            .map(|a| pt(Table::Holding, a, PointType::U16))
            .collect();
        let blocks = plan(&points, 8);
        assert_eq!(blocks.iter().map(|b| b.count).collect::<Vec<_>>(), [125, 5]);
        let coils: Vec<PointDef> = (0..2100)
            .map(|a| pt(Table::Coil, a, PointType::Bool))
            .collect();
        let blocks = plan(&coils, 8);
        assert_eq!(
            blocks.iter().map(|b| b.count).collect::<Vec<_>>(),
            [2000, 100]
        );
    }

    #[test]
    fn bit_tables_use_a_gap_sixteen_times_wider() {
        let coils = [
            pt(Table::Coil, 0, PointType::Bool),
            pt(Table::Coil, 100, PointType::Bool),
        ];
        assert_eq!(plan(&coils, 8).len(), 1);
        let far = [
            pt(Table::Coil, 0, PointType::Bool),
            pt(Table::Coil, 200, PointType::Bool),
        ];
        assert_eq!(plan(&far, 8).len(), 2);
    }

    #[test]
    fn points_without_a_register_are_left_out() {
        let mut p = pt(Table::Input, 0, PointType::U16);
        p.reg = None;
        assert!(plan(&[p], 8).is_empty());
    }

    fn any_point() -> impl Strategy<Value = PointDef> {
        let types = prop::sample::select(vec![
            PointType::U16,
            PointType::I32,
            PointType::F64,
            PointType::String,
            PointType::Bool,
        ]);
        let tables = prop::sample::select(Table::ALL.to_vec());
        let lengths = 1u16..=Table::Holding.max_per_read();
        (tables, 0u16..3000, types, lengths).prop_map(|(table, address, ty, length)| {
            let ty = if table.is_bits() { PointType::Bool } else { ty };
            let mut p = pt(table, address, ty);
            if let Some(r) = p.reg.as_mut() {
                r.length = (ty == PointType::String).then_some(length);
            }
            p
        })
    }

    proptest! {
        #[test]
        fn every_point_is_read_by_exactly_one_block_within_limits_and_without_overlap(
            points in prop::collection::vec(any_point(), 0..60),
            max_gap in 0u16..40,
        ) {
            let blocks = plan(&points, max_gap);
            let mut seen = vec![0usize; points.len()];
            for b in &blocks {
                let limit = b.table.max_per_read();
                prop_assert!(b.count >= 1 && b.count <= limit);
                for &(i, off) in &b.points {
                    seen[i] += 1;
                    let reg = points[i].reg.as_ref().expect("register");
                    prop_assert_eq!(reg.table, b.table);
                    prop_assert_eq!(u32::from(b.start) + u32::from(off), u32::from(reg.address));
                    prop_assert!(off + span(reg, points[i].ty) <= b.count);
                }
            }
            prop_assert!(seen.iter().all(|&n| n == 1));
            for pair in blocks.windows(2) {
                let (a, b) = (&pair[0], &pair[1]);
                prop_assert!((a.table, a.start) < (b.table, b.start));
                if a.table == b.table && u32::from(a.start) + u32::from(a.count) > u32::from(b.start) {
                    // Only forced overlap: b's first point overlaps a point of a, and the
                    // two could not be read together within the limit.
                    let range = |i: usize| {
                        let reg = points[i].reg.as_ref().expect("register");
                        let s = u32::from(reg.address);
                        (s, s + u32::from(span(reg, points[i].ty)))
                    };
                    let (fs, _) = range(b.points[0].0);
                    let forced = a.points.iter().any(|&(i, _)| {
                        let (s, e) = range(i);
                        s <= fs && fs < e
                    });
                    prop_assert!(forced);
                }
            }
        }
    }
}
