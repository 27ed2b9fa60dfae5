import Testing

@testable import ElasticTLS

/// The CBOR subset: deterministic encoding (RFC 8949 §4.2.1) and a strict decoder.
@Suite struct CBORTests {
    @Test func encodingsAreTheShortestAndKnownVectors() {
        // RFC 8949 Appendix A.
        #expect(CBOR.unsigned(0).encoded == [0x00])
        #expect(CBOR.unsigned(23).encoded == [0x17])
        #expect(CBOR.unsigned(24).encoded == [0x18, 0x18])
        #expect(CBOR.unsigned(1000).encoded == [0x19, 0x03, 0xe8])
        #expect(CBOR.unsigned(1_000_000).encoded == [0x1a, 0x00, 0x0f, 0x42, 0x40])
        #expect(CBOR.unsigned(1_000_000_000_000).encoded == [0x1b, 0x00, 0x00, 0x00, 0xe8, 0xd4, 0xa5, 0x10, 0x00])
        #expect(CBOR.bytes([1, 2, 3, 4]).encoded == [0x44, 1, 2, 3, 4])
        #expect(CBOR.text("IETF").encoded == [0x64, 0x49, 0x45, 0x54, 0x46])
        #expect(
            CBOR.array([.unsigned(1), .array([.unsigned(2), .unsigned(3)])]).encoded == [0x82, 0x01, 0x82, 0x02, 0x03])
        #expect(
            CBOR.map([(.text("b"), .unsigned(2)), (.text("a"), .unsigned(1))]).encoded
                == [0xa2, 0x61, 0x61, 0x01, 0x61, 0x62, 0x02], "keys sorted by their encoding")
        #expect(CBOR.tagged(1, .unsigned(1_363_896_240)).encoded == [0xc1, 0x1a, 0x51, 0x4b, 0x67, 0xb0])
    }

    @Test func decodingRoundTripsAndRefusesWhatIsNotDeterministic() throws {
        let v = CBOR.tagged(
            0x454C_4153,
            .map([
                (.text("report"), .bytes([UInt8](repeating: 7, count: 300))),
                (.text("n"), .array([.unsigned(1), .text("é")])),
            ]))
        #expect(try CBOR(decoding: v.encoded) == v)
        #expect(try CBOR(decoding: v.encoded)["report"] == nil, "a tagged value is not a map")
        for bad: [UInt8] in [
            [0x18, 0x17],  // 23 in two bytes
            [0x5f, 0x41, 0x00, 0xff],  // indefinite length
            [0xa2, 0x61, 0x62, 0x02, 0x61, 0x61, 0x01],  // keys out of order
            [0xa2, 0x61, 0x61, 0x01, 0x61, 0x61, 0x02],  // a repeated key
            [0x44, 1, 2],  // cut short
            [0x01, 0x02],  // trailing bytes
            [0x20],  // a negative integer: not used here
            [0x62, 0xc3, 0x28],  // bad UTF-8
            [0x9b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],  // an absurd length
        ] {
            #expect(throws: CBOR.DecodingError.self, "\(bad)") { try CBOR(decoding: bad) }
        }
        var deep: [UInt8] = Array(repeating: 0x81, count: 40)
        deep.append(0x00)
        #expect(throws: CBOR.DecodingError.self) { try CBOR(decoding: deep) }
    }
}
