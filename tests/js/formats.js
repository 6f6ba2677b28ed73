// Formats for ajv-cli (`-c ./tests/js/formats.js`): the standard ones from ajv-formats, plus
// the integer formats that schemars writes for Rust integer types.
"use strict";
const addFormats = require("ajv-formats");

module.exports = function (ajv) {
  addFormats(ajv);
  ajv.addFormat("uint32", {
    type: "number",
    validate: (n) => Number.isInteger(n) && n >= 0 && n <= 4294967295,
  });
  return ajv;
};
