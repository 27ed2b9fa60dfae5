import ElasticFormat
import Testing

@Suite struct BlockLayoutTests {
    @Test func sizesAtEveryBoundary() {
        let bs = BlockLayout.blockSize, cbs = BlockLayout.cipherBlockSize, h = BlockLayout.headerSize
        #expect(h == 24 && bs == 4096 && cbs == 4124)
        let cases: [(Int64, Int64)] = [
            (0, 0), (1, h + 29), (4095, h + 4095 + 28), (4096, h + cbs), (4097, h + cbs + 29),
            (8192, h + 2 * cbs), (8191, h + cbs + 4095 + 28), (1 << 20, h + 256 * cbs),
        ]
        for (plain, cipher) in cases {
            #expect(BlockLayout.ciphertextSize(plain: plain) == cipher, "plain \(plain)")
            #expect(BlockLayout.plaintextSize(cipher: cipher) == plain, "cipher \(cipher)")
        }
    }

    @Test func roundTripForManySizes() {
        for plain in Int64(0)...Int64(3 * 4096 + 7) {
            #expect(BlockLayout.plaintextSize(cipher: BlockLayout.ciphertextSize(plain: plain)) == plain)
        }
        let big = BlockLayout.maxPlaintextSize
        #expect(BlockLayout.plaintextSize(cipher: BlockLayout.ciphertextSize(plain: big)) == big)
    }

    @Test func impossibleCipherLengthsAreRejected() {
        #expect(BlockLayout.plaintextSize(cipher: 1) == nil)
        #expect(BlockLayout.plaintextSize(cipher: 23) == nil)
        #expect(BlockLayout.plaintextSize(cipher: 24) == 0)
        for rest in Int64(1)...28 { #expect(BlockLayout.plaintextSize(cipher: 24 + rest) == nil) }
        #expect(BlockLayout.plaintextSize(cipher: 24 + 4124 + 28) == nil)
        #expect(BlockLayout.reportedSize(cipher: 24 + 4124 + 28) == 4096)
    }

    @Test func blockIndexesAndOffsets() {
        #expect(BlockLayout.blocks(offset: 0, length: 1) == 0...0)
        #expect(BlockLayout.blocks(offset: 4095, length: 2) == 0...1)
        #expect(BlockLayout.blocks(offset: 4096, length: 4096) == 1...1)
        #expect(BlockLayout.blocks(offset: 4096, length: 4097) == 1...2)
        #expect(BlockLayout.cipherOffset(block: 0) == 24)
        #expect(BlockLayout.cipherOffset(block: 3) == 24 + 3 * 4124)
        #expect(BlockLayout.plaintextLength(block: 2, fileSize: 10000) == 10000 - 8192)
        #expect(BlockLayout.plaintextLength(block: 3, fileSize: 10000) == 0)
        #expect(BlockLayout.plaintextLength(block: 1, fileSize: 10000) == 4096)
    }
}
