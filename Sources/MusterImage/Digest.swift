import CLibCrypto

/// SHA-256 over bytes fed in pieces, so a layer of any size is hashed as it streams past.
final class SHA256Hasher {
    private let context: OpaquePointer

    init() {
        // EVP_MD_CTX_new fails only when memory is gone; nothing sensible is left to do then.
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new: out of memory") }
        self.context = context
        EVP_DigestInit_ex(context, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
        EVP_DigestUpdate(context, base, bytes.count)
    }

    /// Lowercase hex of the digest; the hasher is spent after this.
    func finish() -> String {
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        EVP_DigestFinal_ex(context, &out, &length)
        let hex: [Character] = Array("0123456789abcdef")
        var text = ""
        for byte in out[0..<Int(length)] {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0xf)])
        }
        return text
    }
}

/// A digest as OCI writes it, `sha256:<64 lowercase hex>`: checked before it becomes part of a
/// path, so that a digest in a manifest can never name a file outside `blobs/sha256`.
struct BlobDigest: Equatable, Hashable, CustomStringConvertible {
    let hex: String

    init(_ text: String, in file: String) throws(ImageError) {
        guard text.hasPrefix("sha256:") else {
            let algorithm = text.split(separator: ":").first.map(String.init) ?? text
            throw ImageError(.invalidImage, "\(file): digest \"\(text)\" uses \(algorithm), and only sha256 is supported (rebuild the image with sha256 digests)")
        }
        let hex = String(text.dropFirst("sha256:".count))
        guard hex.utf8.count == 64, hex.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else {
            throw ImageError(.invalidImage, "\(file): digest \"\(text)\" is not sha256 followed by 64 lowercase hex digits (the image is damaged; rebuild it)")
        }
        self.hex = hex
    }

    var description: String { "sha256:" + hex }
    var blobPath: String { "blobs/sha256/" + hex }
}
