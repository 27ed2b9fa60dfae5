import ElasticFormat
import Testing

@Suite struct BlockLayoutTests {
    @Test func sizesAtEveryBoundary() {
        let bs = BlockLayout.blockSize, cbs = BlockLayout.cipherBlockSize, h = BlockLayout.headerSize
        #expect(h == 164 && bs == 4096 && cbs == 4124)
        let cases: [(Int64, Int64)] = [
            (0, h), (1, h + 29), (4095, h + 4095 + 28), (4096, h + cbs), (4097, h + cbs + 29),
            (8192, h + 2 * cbs), (8191, h + cbs + 4095 + 28), (1 << 20, h + 256 * cbs),
        ]
        for (plain, cipher) in cases {
            #expect(BlockLayout.ciphertextSize(plain: plain) == cipher, "plain \(plain)")
        }
    }

    /// v1 files (read by `elastic migrate` only): the size follows from the ciphertext length.
    @Test func version1LengthsRoundTripAndImpossibleOnesAreRejected() {
        let v1 = Int64(FileHeader.v1Size)
        for plain in Int64(1)...Int64(3 * 4096 + 7) {
            #expect(
                BlockLayout.v1PlaintextSize(cipher: BlockLayout.ciphertextSize(plain: plain, headerSize: v1)) == plain)
        }
        #expect(BlockLayout.v1PlaintextSize(cipher: 0) == 0)
        #expect(BlockLayout.v1PlaintextSize(cipher: 1) == nil)
        #expect(BlockLayout.v1PlaintextSize(cipher: 23) == nil)
        #expect(BlockLayout.v1PlaintextSize(cipher: 24) == 0)
        for rest in Int64(1)...28 { #expect(BlockLayout.v1PlaintextSize(cipher: 24 + rest) == nil) }
        #expect(BlockLayout.v1PlaintextSize(cipher: 24 + 4124 + 28) == nil)
    }

    @Test func blockIndexesAndOffsets() {
        #expect(BlockLayout.blocks(offset: 0, length: 1) == 0...0)
        #expect(BlockLayout.blocks(offset: 4095, length: 2) == 0...1)
        #expect(BlockLayout.blocks(offset: 4096, length: 4096) == 1...1)
        #expect(BlockLayout.blocks(offset: 4096, length: 4097) == 1...2)
        #expect(BlockLayout.cipherOffset(block: 0) == 164)
        #expect(BlockLayout.cipherOffset(block: 3) == 164 + 3 * 4124)
        #expect(BlockLayout.plaintextLength(block: 2, fileSize: 10000) == 10000 - 8192)
        #expect(BlockLayout.plaintextLength(block: 3, fileSize: 10000) == 0)
        #expect(BlockLayout.plaintextLength(block: 1, fileSize: 10000) == 4096)
    }
}
