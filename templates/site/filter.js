// The registry index's row filter: every word typed must occur in a row's data-search text.
// It only hides rows and writes a count with textContent: no eval, no innerHTML, nothing fetched.
(function () {
  "use strict";
  var input = document.getElementById("filter");
  var table = document.getElementById("cards");
  var shown = document.getElementById("shown");
  var box = document.getElementById("filter-box");
  if (!input || !table || !table.tBodies.length) {
    return;
  }
  var rows = Array.prototype.slice.call(table.tBodies[0].rows);
  function apply() {
    var words = input.value.toLowerCase().split(/\s+/).filter(function (word) { return word.length > 0; });
    var count = 0;
    rows.forEach(function (row) {
      var text = row.getAttribute("data-search") || "";
      var match = words.every(function (word) { return text.indexOf(word) !== -1; });
      row.hidden = !match;
      if (match) {
        count += 1;
      }
    });
    if (shown) {
      shown.textContent = count + " of " + rows.length + " shown";
    }
  }
  if (box) {
    box.hidden = false;
  }
  input.addEventListener("input", apply);
  apply();
}());
