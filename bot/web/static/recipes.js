// pix2chat web chat, recipes: a picker plus several photos at once, "/recipe ..." typed in the
// composer, one status line per batch and a grid of its results with a zip download.
// Uses app.js's helpers ($, api, element, addMessage, textMessage, errorMessage, refreshStrip).
"use strict";

const batches = new Map(); // run id -> status element

async function loadRecipes() {
  const { ok, data } = await api("/api/recipes");
  const select = $("recipe-name");
  if (!ok || !select) return;
  const chosen = select.value;
  select.replaceChildren(element("option", "", data.recipes.length ? "Recipe…" : "No recipes yet"));
  select.firstChild.value = "";
  for (const recipe of data.recipes) {
    const option = element("option", "", `${recipe.name} (${recipe.steps} steps)`);
    option.value = recipe.name;
    select.append(option);
  }
  select.value = chosen;
  $("recipe-row").hidden = false;
}

function readBase64(file) {
  return new Promise((resolve) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1] || "");
    reader.onerror = () => resolve("");
    reader.readAsDataURL(file);
  });
}

function batchStatus(reply) {
  const node = element("div", "msg bot batch");
  node.append(element("p", "text", reply.text));
  addMessage(node);
  if (reply.run) batches.set(reply.run, node);
}

function batchGrid(reply) {
  const node = batches.get(reply.run) || element("div", "msg bot batch");
  node.replaceChildren(element("p", "text", reply.text));
  const grid = element("div", "grid");
  for (const version of reply.versions || []) {
    const link = element("a");
    link.href = version.full;
    link.download = `pix2chat-${version.version_id}.png`;
    const img = element("img");
    img.src = version.thumbnail;
    img.alt = `Result ${version.version_id}`;
    link.append(img);
    grid.append(link);
  }
  node.append(grid);
  if (reply.zip) {
    const zip = element("a", "download", "Download all (zip, full resolution)");
    zip.href = reply.zip;
    node.append(zip);
  }
  if (!batches.has(reply.run)) addMessage(node);
  batches.delete(reply.run);
}

window.pix2chatBatch = async (reply) => {
  if (reply.kind === "batch_result") {
    batchGrid(reply);
    await refreshStrip();
  } else if (batches.has(reply.run)) {
    batches.get(reply.run).querySelector(".text").textContent = reply.text;
  }
};

async function applyRecipe() {
  const input = $("recipe-files");
  const name = $("recipe-name").value;
  const files = Array.from(input.files || []);
  input.value = "";
  if (!files.length) return;
  if (!name) {
    errorMessage("Choose a recipe first.");
    return;
  }
  const photos = [];
  for (const file of files) photos.push({ name: file.name, data: await readBase64(file) });
  const { data } = await api("/api/recipes/apply", { method: "POST", json: { name, photos } });
  if (data.is_error) errorMessage(data.text);
  else batchStatus(data);
}

async function recipeCommand(event) {
  const text = $("text").value.trim();
  if (!/^\/recipes?(\s|$)/i.test(text)) return;
  event.preventDefault();
  event.stopImmediatePropagation();
  $("text").value = "";
  const words = text.toLowerCase().startsWith("/recipes") ? "list" : text.replace(/^\/recipe\s*/i, "");
  const { data } = await api("/api/recipe", { method: "POST", json: { words } });
  if (data.is_error) {
    errorMessage(data.text);
    return;
  }
  const node = textMessage(data.text);
  if (data.download && node) {
    const link = element("a", "download", "Download the recipe file");
    link.href = data.download;
    node.append(link);
  }
  await loadRecipes();
}

async function importRecipe() {
  const input = $("recipe-import");
  const file = input.files && input.files[0];
  input.value = "";
  if (!file) return;
  const { data } = await api("/api/recipes/import", { method: "POST", body: file });
  if (data.is_error) errorMessage(data.text);
  else textMessage(data.text);
  await loadRecipes();
}

document.addEventListener("DOMContentLoaded", () => {
  $("composer").addEventListener("submit", recipeCommand, true);
  $("recipe-files").addEventListener("change", applyRecipe);
  $("recipe-import").addEventListener("change", importRecipe);
  $("recipe-name").addEventListener("focus", loadRecipes);
  setTimeout(loadRecipes, 500);
});
