// Prints the Khronos glTF validator's JSON report of one .glb / .gltf file.
// Usage: node validate.js FILE   (exit status 2 when the file cannot be read at all)
const fs = require("fs");
const path = require("path");
const validator = require("gltf-validator");

const file = process.argv[2];
const bytes = new Uint8Array(fs.readFileSync(file));
const loadBeside = (uri) => new Promise((resolve, reject) => {
  fs.readFile(path.join(path.dirname(file), decodeURIComponent(uri)),
    (err, data) => (err ? reject(err.toString()) : resolve(new Uint8Array(data))));
});
validator.validateBytes(bytes, { uri: path.basename(file), externalResourceFunction: loadBeside })
  .then((report) => console.log(JSON.stringify(report)))
  .catch((error) => { console.error(String(error)); process.exit(2); });
