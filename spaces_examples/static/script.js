document.getElementById("clock").textContent = "it is " + new Date().toLocaleTimeString();
