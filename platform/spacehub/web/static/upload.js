// Create a space and upload its files: drag-and-drop of files, a folder or an archive, with upload progress.
(function () {
  "use strict";
  const spacehub = (window.spacehub = window.spacehub || {});
  const ARCHIVE = /\.(zip|tar|tar\.gz|tgz)$/i;
  const SKIPPED = new Set([".git", "__pycache__", ".venv", ".DS_Store", "node_modules"]);

  function humanSize(bytes) {
    const units = ["B", "kB", "MB", "GB"];
    let value = bytes;
    let unit = 0;
    while (value >= 1000 && unit < units.length - 1) { value /= 1000; unit += 1; }
    return (unit === 0 ? value : value.toFixed(1)) + " " + units[unit];
  }

  // A dropped or chosen folder arrives as "folder/..." paths: its own name is not part of the space.
  function stripCommonFolder(items) {
    if (items.length === 0 || !items.every(function (item) { return item.path.includes("/"); })) return items;
    const first = items[0].path.split("/")[0];
    if (!items.every(function (item) { return item.path.split("/")[0] === first; })) return items;
    return items.map(function (item) { return { path: item.path.slice(first.length + 1), file: item.file }; });
  }

  function keep(item) {
    return !item.path.split("/").some(function (part) { return SKIPPED.has(part); });
  }

  function readEntries(reader) {
    return new Promise(function (resolve, reject) { reader.readEntries(resolve, reject); });
  }

  async function walk(entry, prefix, out) {
    if (entry.isFile) {
      const file = await new Promise(function (resolve, reject) { entry.file(resolve, reject); });
      out.push({ path: prefix + entry.name, file: file });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      let batch;
      do {
        batch = await readEntries(reader);
        for (const child of batch) await walk(child, prefix + entry.name + "/", out);
      } while (batch.length > 0);
    }
  }

  async function filesFromDrop(transfer) {
    const entries = Array.from(transfer.items || [])
      .filter(function (item) { return item.kind === "file"; })
      .map(function (item) { return item.webkitGetAsEntry ? item.webkitGetAsEntry() : null; });
    if (entries.length === 0 || entries.some(function (entry) { return !entry; })) {
      return Array.from(transfer.files).map(function (file) { return { path: file.name, file: file }; });
    }
    const out = [];
    for (const entry of entries) await walk(entry, "", out);
    return out;
  }

  function upload(owner, name, items, onProgress) {
    return new Promise(function (resolve, reject) {
      const form = new FormData();
      if (items.length === 1 && ARCHIVE.test(items[0].path)) {
        form.append("archive", items[0].file, items[0].path);
      } else {
        items.forEach(function (item) { form.append("files", item.file, item.path); });
      }
      const xhr = new XMLHttpRequest();
      xhr.open("POST", "/api/spaces/" + encodeURIComponent(owner) + "/" + encodeURIComponent(name) + "/upload");
      xhr.setRequestHeader("X-CSRF-Token", spacehub.csrf());
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) onProgress(event.loaded, event.total);
      });
      xhr.addEventListener("load", function () {
        let answer = null;
        try { answer = JSON.parse(xhr.responseText); } catch (error) { answer = null; }
        if (xhr.status >= 200 && xhr.status < 300) resolve(answer);
        else reject(new Error((answer && answer.error) || "the upload failed (HTTP " + xhr.status + ")"));
      });
      xhr.addEventListener("error", function () { reject(new Error("the connection broke during the upload")); });
      xhr.send(form);
    });
  }

  async function createSpace(fields) {
    const response = await fetch("/api/repos/create", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": spacehub.csrf() },
      body: JSON.stringify({
        type: "space", name: fields.name, organization: fields.owner, sdk: fields.sdk,
        hardware: fields.hardware, storageTier: fields.storage || null, private: fields.visibility === "private",
      }),
    });
    let answer = null;
    try { answer = await response.json(); } catch (error) { answer = null; }
    if (!response.ok) throw new Error((answer && answer.error) || "could not create the space (HTTP " + response.status + ")");
    return answer;
  }

  function bind(form) {
    if (form.dataset.bound) return;
    form.dataset.bound = "1";
    const zone = form.querySelector("[data-dropzone]");
    const list = form.querySelector("[data-file-list]");
    const progress = form.querySelector("[data-upload-progress]");
    const progressBar = progress.querySelector(".progress > span");
    const progressText = form.querySelector("[data-upload-text]");
    const uploadError = form.querySelector("[data-upload-error]");
    const createError = form.querySelector("[data-create-error]");
    const submit = form.querySelector("[data-upload-submit]");
    let items = [];

    function showError(text) {
      const target = createError || uploadError;
      target.textContent = text;
      target.hidden = !text;
    }

    function setItems(found) {
      items = stripCommonFolder(found).filter(keep);
      list.innerHTML = "";
      items.slice(0, 500).forEach(function (item) {
        const li = document.createElement("li");
        const path = document.createElement("span");
        path.textContent = item.path;
        const size = document.createElement("span");
        size.className = "muted";
        size.textContent = humanSize(item.file.size);
        li.append(path, size);
        list.appendChild(li);
      });
      if (items.length > 500) {
        const more = document.createElement("li");
        more.textContent = "… and " + (items.length - 500) + " more";
        list.appendChild(more);
      }
      list.hidden = items.length === 0;
      zone.dataset.count = String(items.length);
      showError("");
    }

    zone.addEventListener("dragover", function (event) { event.preventDefault(); zone.classList.add("over"); });
    zone.addEventListener("dragleave", function () { zone.classList.remove("over"); });
    zone.addEventListener("drop", async function (event) {
      event.preventDefault();
      zone.classList.remove("over");
      setItems(await filesFromDrop(event.dataTransfer));
    });
    form.querySelector("[data-pick-files]").addEventListener("change", function (event) {
      setItems(Array.from(event.target.files).map(function (file) { return { path: file.name, file: file }; }));
    });
    form.querySelector("[data-pick-folder]").addEventListener("change", function (event) {
      setItems(Array.from(event.target.files).map(function (file) {
        return { path: file.webkitRelativePath || file.name, file: file };
      }));
    });

    form.addEventListener("submit", async function (event) {
      event.preventDefault();
      showError("");
      const creating = form.hasAttribute("data-create-form");
      const fields = creating ? Object.fromEntries(new FormData(form).entries()) :
        { owner: form.dataset.owner, name: form.dataset.name };
      if (creating && !fields.name) { showError("Give the space a name."); return; }
      if (!creating && items.length === 0) { showError("Choose or drop the files to upload first."); return; }
      submit.disabled = true;
      const page = "/spaces/" + encodeURIComponent(fields.owner) + "/" + encodeURIComponent(fields.name);
      try {
        if (creating) {
          submit.textContent = "Creating…";
          await createSpace(fields);
        }
      } catch (error) {
        showError(error.message);
        submit.disabled = false;
        submit.textContent = "Create space";
        return;
      }
      if (items.length === 0) { location.href = page; return; }
      progress.hidden = false;
      submit.textContent = "Uploading…";
      try {
        await upload(fields.owner, fields.name, items, function (loaded, total) {
          const percent = Math.round((loaded / total) * 100);
          progressBar.style.width = percent + "%";
          progressText.textContent = "Uploading " + humanSize(loaded) + " of " + humanSize(total) + " (" + percent + "%)";
        });
        progressBar.style.width = "100%";
        progressText.textContent = "Uploaded. Opening the space…";
        location.href = page;
      } catch (error) {
        progress.hidden = true;
        submit.disabled = false;
        submit.textContent = creating ? "Upload again" : "Upload and build";
        if (creating) {
          form.setAttribute("data-upload-only", "");
          form.removeAttribute("data-create-form");
          form.dataset.owner = fields.owner;
          form.dataset.name = fields.name;
          showError("The space " + fields.owner + "/" + fields.name + " was created, but the upload failed: " + error.message);
        } else {
          showError(error.message);
        }
      }
    });
  }

  spacehub.bindUploadForms = function (root) {
    (root || document).querySelectorAll("form[data-upload-form]").forEach(bind);
  };
  spacehub.bindUploadForms(document);
})();
