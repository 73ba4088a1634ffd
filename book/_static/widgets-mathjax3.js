// ipywidgets 8 typesets widget descriptions with the MathJax 2 call
// `MathJax.Hub.Queue(["Typeset", MathJax.Hub, element])`; the book loads MathJax 3, which has no
// `Hub`, so every widget with a description logged "Cannot read properties of undefined (reading
// 'Queue')". Map that call onto MathJax 3's typesetPromise. Deferred scripts (MathJax) have run by
// DOMContentLoaded; the widget manager renders on `load`, after it.
window.addEventListener("DOMContentLoaded", function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub) return;
  mj.Hub = {
    Queue: function () {
      Array.prototype.forEach.call(arguments, function (call) {
        if (!Array.isArray(call) || call[0] !== "Typeset") return;
        var ready = (mj.startup && mj.startup.promise) || Promise.resolve();
        ready.then(function () {
          if (mj.typesetPromise) return mj.typesetPromise(call[2] ? [call[2]] : undefined);
        }).catch(function (err) { console.warn("MathJax could not typeset a widget label", err); });
      });
    }
  };
});
