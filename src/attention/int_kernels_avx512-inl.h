// AVX-512 kernels of the integer attention path for CPUs with VBMI and VNNI (Highway's AVX3_DL
// target: Ice Lake and later Xeons, Zen 4 and later). They compute exactly the integers of the
// portable loops (int_tables.hpp), 64 coordinates per register instead of the AVX2 kernels' 32:
// - unpacking: per 64 codes one masked load (no read past the row), one vpermb (each qword gets the
//   b bytes holding its 8 codes), one vpmultishiftqb (code i of a qword to byte i) and one vpermb as
//   the table lookup (a 64-entry table t[i mod 2^b], so the bits above a code need no mask); int8
//   codes: a load and an XOR;
// - scores: vpmaddubsw (table bytes x q8, pair sums) and vpdpwssd (times the pairs' 16-bit scales,
//   added to the int32 accumulator in the same instruction);
// - values: two rows' table values as int16 pairs (one vpermt2b with a zero mask per 16
//   coordinates), then one vpdpwssd per head and 16 coordinates with the rows' weight pair.
// Rows of n = 64 or 128 coordinates with 2..4-bit codes and a row norm (Lloyd-Max formats), int8 codes
// with a row scale (q8: the code byte with its top bit flipped is the table value) or int4 codes with
// a scale per 32 coordinates (q4, q4h: each block's integer score sum times its scale in float, one
// weight set per block); other widths take the AVX2 kernels. Included by attend_int_kernels.cpp
// inside its per-target namespace, for HWY_TARGET == HWY_AVX3_DL only (no include guard: one copy
// per target).

// Highway 1.0's AVX3_DL attribute string names avxvnni (VEX) but not avx512vnni; its runtime check
// for the target requires AVX512-VNNI, so the EVEX vpdpwssd is safe wherever this target runs.
#pragma GCC push_options
#pragma GCC target("avx512vnni")

constexpr size_t kBlock512 = 64;                         // coordinates per register
constexpr size_t kMaxBlocks512 = 2;                      // n <= 128
constexpr size_t kQuerySlot512 = 128;                    // per head and block: 64 q8 bytes, 32 pair scales
constexpr size_t kQueryBlock512 = kHeadsPerPass * kQuerySlot512;

/// Whether a format's rows fit these kernels: n = 64 or 128 coordinates of b-bit Lloyd-Max codes with
/// a row norm, of int8 codes with a row scale, or of int4 codes with a scale per 32 coordinates.
inline bool Fits512(const KernelFormat& f, const IntCodebook& cb) {
  if (f.n != 64 && f.n != 128) return false;
  if (f.kind == CodeKind::Int8) return f.row_scale && cb.bits == 8 && f.code_bytes == f.n;
  if (f.block_scale) return f.kind == CodeKind::Packed && cb.bits == 4 && f.n_blocks == f.n / 32 && f.code_bytes == f.n / 2;
  return f.kind == CodeKind::Packed && f.row_scale && !f.block_scale && cb.bits >= 2 && cb.bits <= 4 &&
         f.code_bytes == f.n * static_cast<size_t>(cb.bits) / 8;
}

// A row's table values in coordinate order, 64 at a time: b-bit codes (LSB first) unpacked and looked
// up, or int8 codes (`bytes`) with their top bit flipped.
struct Unpacker512 {
  __m512i place;         // vpermb: byte 8k + i <- block byte bk + i (qword k: the b bytes of codes 8k..8k+7)
  __m512i shifts;        // vpmultishiftqb: byte 8k + i <- bits from i * b of its qword
  __m512i table;         // t[i mod 2^b], i < 64
  __mmask64 block_mask;  // a block's 8b bytes
  size_t block_bytes, blocks;
  bool bytes;
  Unpacker512(const IntCodebook& cb, size_t n) : blocks(n / kBlock512), bytes(cb.bits == 8) {
    const int b = bytes ? 8 : cb.bits;
    block_bytes = 8 * static_cast<size_t>(b);
    block_mask = block_bytes >= 64 ? ~__mmask64{0} : (__mmask64{1} << block_bytes) - 1;
    alignas(64) uint8_t pl[64] = {}, sh[64] = {}, tb[64] = {};
    if (!bytes) {
      for (int k = 0; k < 8; ++k) {
        for (int i = 0; i < 8; ++i) {
          pl[8 * k + i] = static_cast<uint8_t>((b * k + i) & 63);
          sh[8 * k + i] = static_cast<uint8_t>(i * b);
        }
      }
      for (int i = 0; i < 64; ++i) tb[i] = cb.t[i % (1 << b)];
    }
    place = _mm512_load_si512(pl);
    shifts = _mm512_load_si512(sh);
    table = _mm512_load_si512(tb);
  }
  // Table bytes of block j (coordinates 64j .. 64j + 63) of the row at p (reads only the row's bytes).
  template <bool kBytes>
  HWY_INLINE __m512i Block(const uint8_t* p, size_t j) const {
    if constexpr (kBytes) return _mm512_xor_si512(_mm512_loadu_si512(p + kBlock512 * j), _mm512_set1_epi8(-128));
    const __m512i x = _mm512_maskz_loadu_epi8(block_mask, p + block_bytes * j);
    return _mm512_permutexvar_epi8(_mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(place, x)), table);
  }
};

/// 16 vectors -> one vector whose lane r is the sum of the 16 lanes of v[r].
HWY_INLINE __m512i SumLanes16(const __m512i* v) {
  __m512i c[8], e[4], g[2];
  for (int i = 0; i < 8; ++i) {  // lane L of c[i]: {A0+A2, B0+B2, A1+A3, B1+B3} of v[2i], v[2i+1]
    c[i] = _mm512_add_epi32(_mm512_unpacklo_epi32(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_epi32(v[2 * i], v[2 * i + 1]));
  }
  for (int i = 0; i < 4; ++i) {  // dword m of lane L of e[i]: the sum of lane L of v[4i + m]
    e[i] = _mm512_add_epi32(_mm512_unpacklo_epi64(c[2 * i], c[2 * i + 1]), _mm512_unpackhi_epi64(c[2 * i], c[2 * i + 1]));
  }
  for (int i = 0; i < 2; ++i) {  // lanes: v[8i + m] over lanes {0, 1}, {2, 3}; v[8i + 4 + m] likewise
    g[i] = _mm512_add_epi32(_mm512_shuffle_i64x2(e[2 * i], e[2 * i + 1], 0x88), _mm512_shuffle_i64x2(e[2 * i], e[2 * i + 1], 0xDD));
  }
  return _mm512_add_epi32(_mm512_shuffle_i64x2(g[0], g[1], 0x88), _mm512_shuffle_i64x2(g[0], g[1], 0xDD));
}

/// The float version of SumLanes16.
HWY_INLINE __m512 SumLanes16(const __m512* v) {
  __m512 c[8], e[4], g[2];
  for (int i = 0; i < 8; ++i) c[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(c[2 * i]), b = _mm512_castps_pd(c[2 * i + 1]);
    e[i] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(a, b)), _mm512_castpd_ps(_mm512_unpackhi_pd(a, b)));
  }
  for (int i = 0; i < 2; ++i) {
    g[i] = _mm512_add_ps(_mm512_shuffle_f32x4(e[2 * i], e[2 * i + 1], 0x88), _mm512_shuffle_f32x4(e[2 * i], e[2 * i + 1], 0xDD));
  }
  return _mm512_add_ps(_mm512_shuffle_f32x4(g[0], g[1], 0x88), _mm512_shuffle_f32x4(g[0], g[1], 0xDD));
}

inline void StoreRowSums(int32_t* dst, __mmask16 keep, __m512i v) { _mm512_mask_storeu_epi32(dst, keep, v); }
inline void StoreRowSums(float* dst, __mmask16 keep, __m512 v) { _mm512_mask_storeu_ps(dst, keep, v); }

/// The row loop of the score kernels: row(r, a) leaves in a[h] the lane partial sums of row r for
/// each of G heads; 16 rows at a time, each head's 16 row totals (SumLanes16) go to
/// out + h * stride + r0 .. (rows past `rows` masked off).
template <size_t G, class V, class T, class RowFn>
HWY_INLINE void SumRowsBy16(size_t rows, T* out, size_t stride, RowFn&& row) {
  alignas(64) V buf[G][16];
  for (size_t r0 = 0; r0 < rows; r0 += 16) {
    const size_t n = rows - r0 < 16 ? rows - r0 : 16;
    for (size_t rr = 0; rr < n; ++rr) {
      V a[G];
      row(r0 + rr, a);
      for (size_t h = 0; h < G; ++h) buf[h][rr] = a[h];
    }
    for (size_t rr = n; rr < 16; ++rr) {
      for (size_t h = 0; h < G; ++h) buf[h][rr] = V{};
    }
    const __mmask16 keep = static_cast<__mmask16>((1u << n) - 1);
    for (size_t h = 0; h < G; ++h) StoreRowSums(out + h * stride + r0, keep, SumLanes16(buf[h]));
  }
}

/// The queries of one pass of <= 4 heads as ScoreRows512 reads them: per block k and head slot h,
/// kQuerySlot512 bytes at (k * 4 + h) * 128: 64 q8 values, then the 32 pair scales (coordinate
/// order; zero for empty head slots). qs: passes x blocks x kQueryBlock512 bytes, 64-byte aligned.
inline void QueryBytes512(const IntQueries& iq, size_t G, size_t blocks, uint8_t* qs) {
  const size_t passes = (G + kHeadsPerPass - 1) / kHeadsPerPass;
  std::memset(qs, 0, passes * blocks * kQueryBlock512);
  for (size_t h = 0; h < G; ++h) {
    for (size_t k = 0; k < blocks; ++k) {
      uint8_t* slot = qs + ((h / kHeadsPerPass) * blocks + k) * kQueryBlock512 + (h % kHeadsPerPass) * kQuerySlot512;
      std::memcpy(slot, iq.q8.data() + h * iq.stride + k * kBlock512, kBlock512);
      std::memcpy(slot + kBlock512, iq.pair_scale.data() + h * (iq.stride / 2) + k * (kBlock512 / 2), kBlock512);
    }
  }
}

/// isum[h * is_stride + r] = sum_j s_m q8[h][j] t[code_rj] for rows r < rows, G <= 4 heads of one pass.
template <size_t G, size_t kBlocks, bool kBytes>
HWY_NOINLINE void ScoreRows512(const Unpacker512& u, const uint8_t* codes, size_t rows, size_t code_bytes,
                               const uint8_t* qs, int32_t* isum, size_t is_stride, const uint8_t* ahead,
                               size_t ahead_rows) {
  static_assert(G >= 1 && G <= kHeadsPerPass && kBlocks >= 1 && kBlocks <= kMaxBlocks512);
  const auto q = [&](size_t k, size_t h) HWY_ATTR { return _mm512_load_si512(qs + k * kQueryBlock512 + h * kQuerySlot512); };
  const auto s = [&](size_t k, size_t h) HWY_ATTR {
    return _mm512_load_si512(qs + k * kQueryBlock512 + h * kQuerySlot512 + kBlock512);
  };
  SumRowsBy16<G, __m512i>(rows, isum, is_stride, [&](size_t r, __m512i* a) HWY_ATTR {
    prefetch_row(ahead, ahead_rows, r, code_bytes);
    const uint8_t* row = codes + r * code_bytes;
    const __m512i t0 = u.template Block<kBytes>(row, 0);
    for (size_t h = 0; h < G; ++h) a[h] = _mm512_madd_epi16(_mm512_maddubs_epi16(t0, q(0, h)), s(0, h));
    if constexpr (kBlocks > 1) {
      const __m512i t1 = u.template Block<kBytes>(row, 1);
      for (size_t h = 0; h < G; ++h) a[h] = _mm512_dpwssd_epi32(a[h], _mm512_maddubs_epi16(t1, q(1, h)), s(1, h));
    }
  });
}

/// int4 K (a scale per 32 coordinates): fsum[h * is_stride + r] = sum_k sc[r * nb + k] * float(block k's
/// integer sum), r < rows, G <= 4 heads of one pass (the blocks' biases are subtracted afterwards, as
/// on AVX2). A register of 64 coordinates holds blocks 2j (lanes 0-7 of the sums) and 2j + 1 (8-15).
template <size_t G, size_t kBlocks>
HWY_NOINLINE void ScoreRowsScaled512(const Unpacker512& u, const uint8_t* codes, size_t rows, size_t code_bytes,
                                     const uint8_t* qs, const float* sc, size_t nb, float* fsum, size_t is_stride,
                                     const uint8_t* ahead, size_t ahead_rows) {
  static_assert(G >= 1 && G <= kHeadsPerPass && kBlocks >= 1 && kBlocks <= kMaxBlocks512);
  const __m512i halves = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  SumRowsBy16<G, __m512>(rows, fsum, is_stride, [&](size_t r, __m512* a) HWY_ATTR {
    prefetch_row(ahead, ahead_rows, r, code_bytes);
    const uint8_t* row = codes + r * code_bytes;
    const float* srow = sc + r * nb;
    for (size_t h = 0; h < G; ++h) a[h] = _mm512_setzero_ps();
    for (size_t k = 0; k < kBlocks; ++k) {
      const __m512i t = u.template Block<false>(row, k);
      // lanes 0-7: the scale of block 2k, 8-15: of block 2k + 1
      const __m128 two = _mm_castsi128_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(srow + 2 * k)));
      const __m512 scale = _mm512_permutexvar_ps(halves, _mm512_castps128_ps512(two));
      for (size_t h = 0; h < G; ++h) {
        const uint8_t* slot = qs + k * kQueryBlock512 + h * kQuerySlot512;
        const __m512i x = _mm512_madd_epi16(_mm512_maddubs_epi16(t, _mm512_load_si512(slot)), _mm512_load_si512(slot + kBlock512));
        a[h] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(x), scale, a[h]);
      }
    }
  });
}

/// vpermt2b indices of ValueRows512: for the 16 coordinates 16c .. 16c + 15 of a block, dword m =
/// (t0[16c + m], t1[16c + m]) (t1: indices 64..127; bytes 1 and 3 are zeroed by the mask).
struct PairPick {
  alignas(64) uint8_t idx[4][64] = {};
  constexpr PairPick() {
    for (int c = 0; c < 4; ++c) {
      for (int m = 0; m < 16; ++m) {
        idx[c][4 * m] = static_cast<uint8_t>(16 * c + m);
        idx[c][4 * m + 2] = static_cast<uint8_t>(64 + 16 * c + m);
      }
    }
  }
};
alignas(64) inline constexpr PairPick kPairPickTable{};
inline constexpr const uint8_t (&kPairPick)[4][64] = kPairPickTable.idx;

/// vsum[h * vs_stride + j] (+)= sum_r w[h][set(j)][r] t[code_rj], j < 64 * kBlocks, G <= 4 heads of one
/// pass (first: =); the weights of head h, set b at w16 + (h * sets + b) * kIntChunk, set(j) = j / 32
/// when kPerBlock (int4: one weight set per 32 coordinates), else 0 (sets = 1). An odd last row pairs
/// with itself; its partner's weight w16[rows] is 0 (SoftmaxToWeights16 and BlockWeights16 write 0 up
/// to the next multiple of 8).
template <size_t G, size_t kBlocks, bool kBytes, bool kPerBlock>
HWY_NOINLINE void ValueRows512(const Unpacker512& u, const uint8_t* codes, size_t rows, size_t code_bytes,
                               const uint16_t* w16, size_t sets, bool first, int32_t* vsum, size_t vs_stride,
                               const uint8_t* ahead, size_t ahead_rows) {
  static_assert(G >= 1 && G <= kHeadsPerPass && kBlocks >= 1 && kBlocks <= kMaxBlocks512);
  __m512i pick[4];
  for (int c = 0; c < 4; ++c) pick[c] = _mm512_load_si512(kPairPick[c]);
  constexpr __mmask64 kLowBytes = 0x5555555555555555ull;
  for (size_t k = 0; k < kBlocks; ++k) {
    __m512i acc[G][4];
    for (size_t h = 0; h < G; ++h) {
      for (int c = 0; c < 4; ++c) acc[h][c] = _mm512_setzero_si512();
    }
    for (size_t r = 0; r < rows; r += 2) {
      if (k == 0) {
        prefetch_row(ahead, ahead_rows, r, code_bytes);
        prefetch_row(ahead, ahead_rows, r + 1, code_bytes);
      }
      const uint8_t* r0 = codes + r * code_bytes;
      const __m512i t0 = u.template Block<kBytes>(r0, k);
      const __m512i t1 = u.template Block<kBytes>(r + 1 < rows ? r0 + code_bytes : r0, k);
      // w[h][0]: coordinates 64k .. 64k + 31, w[h][1]: the next 32 (the same pair unless kPerBlock)
      __m512i w[G][2];
      for (size_t h = 0; h < G; ++h) {
        for (size_t half = 0; half < (kPerBlock ? 2 : 1); ++half) {
          uint32_t pair;  // w16[r] | w16[r + 1] << 16 of the set
          std::memcpy(&pair, w16 + (h * sets + (kPerBlock ? 2 * k + half : 0)) * kIntChunk + r, sizeof(pair));
          w[h][half] = _mm512_set1_epi32(static_cast<int>(pair));
        }
        if constexpr (!kPerBlock) w[h][1] = w[h][0];
      }
      for (int c = 0; c < 4; ++c) {
        const __m512i x = _mm512_maskz_permutex2var_epi8(kLowBytes, t0, pick[c], t1);
        for (size_t h = 0; h < G; ++h) acc[h][c] = _mm512_dpwssd_epi32(acc[h][c], x, w[h][c / 2]);
      }
    }
    for (size_t h = 0; h < G; ++h) {
      for (int c = 0; c < 4; ++c) {
        int32_t* dst = vsum + h * vs_stride + k * kBlock512 + 16 * c;
        const __m512i v = first ? acc[h][c] : _mm512_add_epi32(_mm512_loadu_si512(dst), acc[h][c]);
        _mm512_storeu_si512(dst, v);
      }
    }
  }
}

/// Scores of rows [0, rows) for all G heads (passes of <= 4 heads over the codes).
/// ahead: the next chunk's first row (ahead_rows of them), prefetched row by row during the first pass.
inline void ScoreAll512(const Unpacker512& u, const uint8_t* codes, size_t rows, size_t code_bytes, const uint8_t* qs,
                        size_t G, int32_t* isum, size_t is_stride, const uint8_t* ahead, size_t ahead_rows) {
  ForHeadPasses(G, [&](auto kg, size_t h0) HWY_ATTR {
    constexpr size_t g = decltype(kg)::value;
    const uint8_t* pq = qs + (h0 / kHeadsPerPass) * u.blocks * kQueryBlock512;
    const size_t pr = h0 ? 0 : ahead_rows;
    int32_t* out = isum + h0 * is_stride;
    if (u.bytes) {
      if (u.blocks == 2) {
        ScoreRows512<g, 2, true>(u, codes, rows, code_bytes, pq, out, is_stride, ahead, pr);
      } else {
        ScoreRows512<g, 1, true>(u, codes, rows, code_bytes, pq, out, is_stride, ahead, pr);
      }
    } else if (u.blocks == 2) {
      ScoreRows512<g, 2, false>(u, codes, rows, code_bytes, pq, out, is_stride, ahead, pr);
    } else {
      ScoreRows512<g, 1, false>(u, codes, rows, code_bytes, pq, out, is_stride, ahead, pr);
    }
  });
}

/// int4 K: block-scaled scores of rows [0, rows) for all G heads (ScoreRowsScaled512; sc: the rows' nb
/// block scales each).
inline void ScoreAllScaled512(const Unpacker512& u, const uint8_t* codes, size_t rows, size_t code_bytes,
                              const uint8_t* qs, const float* sc, size_t nb, size_t G, float* fsum, size_t is_stride,
                              const uint8_t* ahead, size_t ahead_rows) {
  ForHeadPasses(G, [&](auto kg, size_t h0) HWY_ATTR {
    constexpr size_t g = decltype(kg)::value;
    const uint8_t* pq = qs + (h0 / kHeadsPerPass) * u.blocks * kQueryBlock512;
    const size_t pr = h0 ? 0 : ahead_rows;
    if (u.blocks == 2) {
      ScoreRowsScaled512<g, 2>(u, codes, rows, code_bytes, pq, sc, nb, fsum + h0 * is_stride, is_stride, ahead, pr);
    } else {
      ScoreRowsScaled512<g, 1>(u, codes, rows, code_bytes, pq, sc, nb, fsum + h0 * is_stride, is_stride, ahead, pr);
    }
  });
}

/// Values of rows [0, rows) for all G heads (w16: head h's weight set b at (h * sets + b) * kIntChunk;
/// sets > 1: one set per 32 coordinates).
inline void ValueAll512(const Unpacker512& u, const uint8_t* codes, size_t rows, size_t code_bytes, const uint16_t* w16,
                        size_t sets, size_t G, bool first, int32_t* vsum, size_t vs_stride, const uint8_t* ahead,
                        size_t ahead_rows) {
  ForHeadPasses(G, [&](auto kg, size_t h0) HWY_ATTR {
    constexpr size_t g = decltype(kg)::value;
    const uint16_t* w = w16 + h0 * sets * kIntChunk;
    int32_t* out = vsum + h0 * vs_stride;
    const size_t pr = h0 ? 0 : ahead_rows;
    const auto run = [&](auto blocks_c, auto bytes_c, auto per_block_c) HWY_ATTR {
      ValueRows512<g, decltype(blocks_c)::value, decltype(bytes_c)::value, decltype(per_block_c)::value>(
          u, codes, rows, code_bytes, w, sets, first, out, vs_stride, ahead, pr);
    };
    using One = std::integral_constant<size_t, 1>;
    using Two = std::integral_constant<size_t, 2>;
    if (sets > 1) {
      if (u.blocks == 2) {
        run(Two{}, std::false_type{}, std::true_type{});
      } else {
        run(One{}, std::false_type{}, std::true_type{});
      }
    } else if (u.bytes) {
      if (u.blocks == 2) {
        run(Two{}, std::true_type{}, std::false_type{});
      } else {
        run(One{}, std::true_type{}, std::false_type{});
      }
    } else if (u.blocks == 2) {
      run(Two{}, std::false_type{}, std::false_type{});
    } else {
      run(One{}, std::false_type{}, std::false_type{});
    }
  });
}

#pragma GCC pop_options
