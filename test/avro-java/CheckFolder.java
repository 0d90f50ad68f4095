// Reads schemas/avro/ the way a Java consumer would and checks it against the
// bytes trustfold writes. Run by test/integration/avro-java.test.ts:
//
//   java -cp '.cache/avro-java/jars/*' test/avro-java/CheckFolder.java schemas/avro <cases-file>
//
// <cases-file> has one line per event type: `<file> <fingerprint hex> <message hex>`,
// the message in single-object encoding (C3 01, fingerprint, body).
//
// Checks, each printed as `ok …` or `FAIL …` (exit 1 on any FAIL):
//  - the whole folder parses in ONE Schema.Parser (common.avsc first), so no
//    named type is defined twice;
//  - each schema's CRC-64-AVRO fingerprint equals the codec's;
//  - each message decodes with the reference reader, consumes every byte, and
//    re-encodes to the identical body;
//  - every enum has a default, and a writer with one more symbol than ours is
//    read as that default (Avro 1.9+ enum resolution).
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.apache.avro.Schema;
import org.apache.avro.SchemaNormalization;
import org.apache.avro.generic.GenericDatumReader;
import org.apache.avro.generic.GenericDatumWriter;
import org.apache.avro.io.BinaryDecoder;
import org.apache.avro.io.BinaryEncoder;
import org.apache.avro.io.DecoderFactory;
import org.apache.avro.io.EncoderFactory;

public class CheckFolder {
  static int failures = 0;

  static void check(boolean ok, String what) {
    System.out.println((ok ? "ok " : "FAIL ") + what);
    if (!ok) failures++;
  }

  static void enums(Schema s, Map<String, Schema> out) {
    switch (s.getType()) {
      case ENUM -> out.putIfAbsent(s.getFullName(), s);
      case RECORD -> {
        if (out.containsKey(s.getFullName())) return;
        out.put(s.getFullName(), s);
        for (Schema.Field f : s.getFields()) enums(f.schema(), out);
      }
      case ARRAY -> enums(s.getElementType(), out);
      case MAP -> enums(s.getValueType(), out);
      case UNION -> { for (Schema b : s.getTypes()) enums(b, out); }
      default -> { }
    }
  }

  public static void main(String[] args) throws Exception {
    File dir = new File(args[0]);
    Schema.Parser parser = new Schema.Parser();
    Map<String, Schema> byFile = new HashMap<>();
    parser.parse(new File(dir, "common.avsc"));
    File[] files = dir.listFiles((d, n) -> n.endsWith(".avsc") && !n.equals("common.avsc"));
    Arrays.sort(files);
    for (File f : files) {
      try {
        byFile.put(f.getName(), parser.parse(f));
      } catch (Exception e) {
        check(false, "parse " + f.getName() + ": " + e.getMessage());
      }
    }
    check(failures == 0, "one Schema.Parser parsed common.avsc and " + files.length + " schemas");

    HexFormat hex = HexFormat.of();
    int cases = 0;
    for (String line : Files.readAllLines(new File(args[1]).toPath())) {
      if (line.isBlank()) continue;
      String[] p = line.trim().split(" ");
      Schema schema = byFile.get(p[0]);
      if (schema == null) { check(false, p[0] + ": no such schema"); continue; }
      cases++;
      String fp = hex.formatHex(java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN)
          .putLong(SchemaNormalization.parsingFingerprint64(schema)).array());
      check(fp.equals(p[1]), p[0] + " fingerprint " + fp + (fp.equals(p[1]) ? "" : " != codec's " + p[1]));
      byte[] msg = hex.parseHex(p[2]);
      boolean framed = msg.length > 10 && (msg[0] & 0xff) == 0xc3 && (msg[1] & 0xff) == 0x01
          && hex.formatHex(msg, 2, 10).equals(fp);
      check(framed, p[0] + " message framed C3 01 + its fingerprint");
      byte[] body = Arrays.copyOfRange(msg, 10, msg.length);
      try {
        BinaryDecoder in = DecoderFactory.get().binaryDecoder(body, null);
        Object value = new GenericDatumReader<Object>(schema).read(null, in);
        ByteArrayOutputStream again = new ByteArrayOutputStream();
        BinaryEncoder enc = EncoderFactory.get().binaryEncoder(again, null);
        new GenericDatumWriter<Object>(schema).write(value, enc);
        enc.flush();
        check(in.isEnd() && Arrays.equals(again.toByteArray(), body),
            p[0] + " decodes every byte and re-encodes identically");
      } catch (Exception e) {
        check(false, p[0] + " decode: " + e);
      }
    }
    check(cases == byFile.size(), cases + " messages for " + byFile.size() + " schemas");

    Map<String, Schema> named = new LinkedHashMap<>();
    for (Schema s : byFile.values()) enums(s, named);
    List<String> enumNames = new ArrayList<>();
    for (Schema s : named.values()) {
      if (s.getType() != Schema.Type.ENUM) continue;
      enumNames.add(s.getName());
      String def = s.getEnumDefault();
      if (def == null) { check(false, s.getFullName() + " has no default symbol"); continue; }
      List<String> newer = new ArrayList<>(s.getEnumSymbols());
      newer.add("zz_added_later");
      Schema writer = Schema.createEnum(s.getName(), null, s.getNamespace(), newer);
      ByteArrayOutputStream out = new ByteArrayOutputStream();
      BinaryEncoder enc = EncoderFactory.get().binaryEncoder(out, null);
      new GenericDatumWriter<Object>(writer).write(
          new org.apache.avro.generic.GenericData.EnumSymbol(writer, "zz_added_later"), enc);
      enc.flush();
      Object read = new GenericDatumReader<Object>(writer, s)
          .read(null, DecoderFactory.get().binaryDecoder(out.toByteArray(), null));
      check(def.equals(read.toString()), s.getFullName() + ": a newer symbol reads as the default " + def);
    }
    System.out.println("FIGURE avro-java: " + byFile.size() + " schemas, " + cases + " messages, enums "
        + String.join(",", enumNames) + ", failures " + failures);
    System.exit(failures == 0 ? 0 : 1);
  }
}
