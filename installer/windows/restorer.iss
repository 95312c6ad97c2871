; Inno Setup script for Restorer (Windows, 64-bit). Build the PyInstaller bundle first:
;   pyinstaller --noconfirm installer\restorer.spec
; then compile this file with Inno Setup 6:  iscc installer\windows\restorer.iss
; Output: dist\RestorerSetup-<version>.exe (a per-user install by default; no admin needed).

#define AppName "Restorer"
#define AppVersion "0.1.0"
#define AppPublisher "Restorer contributors"
#define BundleDir "..\..\dist\restorer"

[Setup]
AppId={{6E0C4E43-3B0F-4F55-9B61-2D3C7A5A9E11}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher={#AppPublisher}
DefaultDirName={autopf}\{#AppName}
DefaultGroupName={#AppName}
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist
OutputBaseFilename=RestorerSetup-{#AppVersion}
Compression=lzma2/max
SolidCompression=yes
DiskSpanning=no
WizardStyle=modern
UninstallDisplayIcon={app}\restorer.exe
; models are downloaded later into the user's data folder; they are not part of the installer

[Languages]
Name: "english"; MessagesFile: "compiler:Default.isl"

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\{#AppName}"; Filename: "{app}\restorer.exe"
Name: "{group}\{#AppName} self-test"; Filename: "{app}\restorer-cli.exe"; Parameters: "--self-test"
Name: "{group}\Uninstall {#AppName}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\{#AppName}"; Filename: "{app}\restorer.exe"; Tasks: desktopicon

[Run]
Filename: "{app}\restorer.exe"; Description: "{cm:LaunchProgram,{#AppName}}"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; downloaded models live in %LOCALAPPDATA%\Restorer\models and are kept on purpose (they are large);
; the app's Models dialog can remove them.
Type: filesandordirs; Name: "{app}\__pycache__"
